"""dspex.Embedder: the OpenAI path and litellm against the loopback server's /v1/embeddings,
callables, a local sentence-transformers model; batching, the cache, usage and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dspex
from dspex.testing import RunningServer, hash_embed

TEXTS = ["Paris is the capital of France", "Berlin is in Germany", "whales are mammals"]


def test_openai_path_batches_and_caches(embed_server: RunningServer) -> None:
    before = embed_server.stats()["embedding_requests"]
    embedder = dspex.Embedder("openai/hash-embed", api_base=embed_server.url, batch_size=2)
    with dspex.track_usage() as usage:
        vectors = embedder([*TEXTS, TEXTS[0]])  # a repeated text is embedded once
    assert vectors.shape == (4, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[:3], np.array(hash_embed(TEXTS)), atol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert embed_server.stats()["embedding_requests"] - before == 2  # 3 texts, 2 per batch
    assert usage.total.prompt_tokens == sum(len(t.split()) for t in TEXTS)

    # A second call, even from a new Embedder, is answered by the LM cache: no request.
    again = dspex.Embedder("openai/hash-embed", api_base=embed_server.url)(TEXTS)
    np.testing.assert_array_equal(again, vectors[:3])
    assert embed_server.stats()["embedding_requests"] - before == 2
    one = embedder("whales are mammals")  # one string: one vector
    assert one.shape == (256,)
    # caching=False asks the server again; request params are part of the key.
    embedder(TEXTS[:1], caching=False)
    small = embedder(TEXTS[:1], dimensions=32)
    assert small.shape == (1, 32)
    assert embed_server.stats()["embedding_requests"] - before == 4


async def test_litellm_path_and_acall(embed_server: RunningServer) -> None:
    embedder = dspex.Embedder(
        "openai/hash-embed",
        api_base=embed_server.url,
        api_key="sk-test-key-123",
        transport="litellm",
        caching=False,
    )
    vectors = await embedder.acall(TEXTS)
    np.testing.assert_allclose(vectors, np.array(hash_embed(TEXTS)), atol=1e-6)
    assert "sk-test-key-123" not in repr(embedder)


def test_provider_errors_are_typed_and_keep_no_secret(embed_server: RunningServer) -> None:
    embedder = dspex.Embedder(
        "openai/hash-embed", api_base=embed_server.url, api_key="sk-secret-abcdef123456"
    )
    with pytest.raises(dspex.LMError) as caught:
        embedder(["x"], dimensions=0)  # the server answers 400: not retried
    assert caught.value.status == 400 and not caught.value.retryable
    assert "sk-secret-abcdef123456" not in str(caught.value)
    # Credentials and endpoints belong to the client: one per call would go out in the body.
    with pytest.raises(dspex.UserError, match="per call"):
        embedder(["x"], api_key="sk-other-abcdef123456")


async def test_retrieve_async_with_its_own_rm() -> None:
    rm = dspex.retrievers.Embeddings(TEXTS, hash_embed, k=1)
    pred = await dspex.Retrieve(k=1, rm=rm).acall(query="Which mammals?")
    assert pred.passages == ["whales are mammals"]


def test_callable_and_bad_input() -> None:
    calls: list[list[str]] = []

    def fn(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array(hash_embed(texts, dim=16))

    embedder = dspex.Embedder(fn, batch_size=2)
    assert embedder(TEXTS).shape == (3, 16)
    assert calls == [TEXTS[:2], TEXTS[2:]]
    with pytest.raises(dspex.UserError, match="strings"):
        embedder(["ok", 3])  # type: ignore[list-item]
    assert len(calls) == 2  # refused before any call
    with pytest.raises(dspex.UserError, match="one row per text"):
        dspex.Embedder(lambda texts: np.ones(3))(["a", "b"])
    with pytest.raises(dspex.UserError, match="batch_size"):
        dspex.Embedder(fn, batch_size=0)


def test_embed_calls_are_traced(embed_server: RunningServer, tmp_path: Path) -> None:
    embedder = dspex.Embedder("openai/hash-embed", api_base=embed_server.url, batch_size=2)
    with dspex.traces.record(run_id="embed-run", runs_dir=tmp_path):
        embedder(TEXTS)
        embedder(TEXTS)  # all from the cache
    rows = dspex.traces.sql(
        "SELECT model, prompt_tokens, cache_hit FROM traces WHERE kind = 'embed' "
        "ORDER BY cache_hit, prompt_tokens",
        tmp_path,
    ).to_pylist()
    assert rows == [
        {"model": "openai/hash-embed", "prompt_tokens": 3, "cache_hit": False},
        {"model": "openai/hash-embed", "prompt_tokens": 10, "cache_hit": False},
        {"model": "openai/hash-embed", "prompt_tokens": 0, "cache_hit": True},
    ]


def test_local_sentence_transformers_model(tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    transformers = pytest.importorskip("transformers")
    words = sorted({w.lower() for t in TEXTS for w in t.split()})
    (tmp_path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n"
    )
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    bert = tmp_path / "bert"
    transformers.BertModel(config).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    body = Transformer(str(bert))
    model = st.SentenceTransformer(modules=[body, Pooling(16)], device="cpu")
    model.save(str(tmp_path / "st"))

    embedder = dspex.Embedder(f"local/{tmp_path / 'st'}", batch_size=2)
    vectors = embedder(TEXTS)
    assert vectors.shape == (3, 16)
    np.testing.assert_allclose(vectors, model.encode(TEXTS), atol=1e-5)
    # Cached like hosted vectors, and the same through a SentenceTransformer object.
    np.testing.assert_array_equal(embedder(TEXTS), vectors)
    np.testing.assert_allclose(dspex.Embedder(model)(TEXTS), vectors, atol=1e-5)
