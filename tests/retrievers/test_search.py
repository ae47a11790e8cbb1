"""Top-k retrieval on a small corpus: dense (Embeddings over the loopback server's embeddings
and over a callable), BM25 and hybrid fusion; the exact and HNSW indexes agree; save/load;
incremental add; dspex.Retrieve over the configured rm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dspex
from dspex.retrievers import BM25, Embeddings, Hybrid
from dspex.testing import RunningServer, hash_embed

CORPUS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany and its largest city.",
    "The Nile is the longest river in Africa.",
    "Mount Everest is the highest mountain above sea level.",
    "The Pacific Ocean is the largest and deepest ocean.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The Amazon rainforest covers much of the Amazon basin in South America.",
    "Jupiter is the largest planet in the Solar System.",
]
# query -> the position of the passage that answers it
QUESTIONS = {
    "Which river is the longest in Africa?": 2,
    "What is the highest mountain?": 3,
    "Which planet is the largest in the Solar System?": 7,
    "How do plants turn sunlight into sugar?": 5,
    "What is the capital of Germany?": 1,
}


def _check_top1(retriever: dspex.retrievers.Retriever, ids: bool = False) -> None:
    for question, answer in QUESTIONS.items():
        pred = retriever(question, k=3)
        assert pred.indices[0] == (str(answer) if ids else answer), question
        assert pred.passages[0] == CORPUS[answer]
        assert pred.scores == sorted(pred.scores, reverse=True)


def test_dense_over_the_openai_embeddings_path(embed_server: RunningServer) -> None:
    embedder = dspex.Embedder("openai/hash-embed", api_base=embed_server.url)
    search = Embeddings(CORPUS, embedder, k=2)
    assert search.index == "exact" and search.corpus_embeddings.shape == (8, 256)
    _check_top1(search)
    pred = search("the largest ocean")
    assert len(pred.passages) == 2 and pred.indices[0] == 4
    assert [p.id for p in search.search("the largest ocean", k=1)] == ["4"]


async def test_dense_async_uses_the_embedders_acall(embed_server: RunningServer) -> None:
    embedder = dspex.Embedder("openai/hash-embed", api_base=embed_server.url)
    search = Embeddings(CORPUS, embedder, k=1)
    pred = await search.acall("Which planet is the largest in the Solar System?")
    assert pred.indices == [7]


def test_exact_and_hnsw_indexes_agree() -> None:
    exact = Embeddings(CORPUS, hash_embed, k=5, index="exact")
    hnsw = Embeddings(CORPUS, hash_embed, k=5, index="hnsw")
    assert (exact.index, hnsw.index) == ("exact", "hnsw")
    for question in [*QUESTIONS, "largest city", "sea and ocean"]:
        a, b = exact(question), hnsw(question)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        # Passages sharing no feature with the query tie near 0, in either order.
        matched = sum(score > 0.05 for score in a.scores)
        assert matched >= 1 and a.indices[:matched] == b.indices[:matched], question


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_save_load_round_trip_and_add(index: str, tmp_path: Path) -> None:
    search = Embeddings(CORPUS[:6], hash_embed, k=2, index=index, ids=[f"p{i}" for i in range(6)])
    search.add(CORPUS[6:], ids=["p6", "p7"])  # incremental: no rebuild
    assert search("largest planet", k=1).indices == ["p7"]
    path = tmp_path / "index"
    search.save(path)
    search.save(path)  # replacing a saved index is a rename, nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]

    loaded = Embeddings.from_saved(path, hash_embed)
    assert (loaded.index, loaded.k, len(loaded.corpus)) == (index, 2, 8)
    for question in QUESTIONS:
        assert loaded(question).indices == search(question).indices
    loaded.add(["Saturn has the most famous rings."], ids=["p8"])
    assert loaded("rings of Saturn", k=1).indices == ["p8"]
    with pytest.raises(dspex.UserError, match="ids"):
        loaded.add(["no id given"])


def test_add_crosses_the_threshold_into_hnsw() -> None:
    search = Embeddings(CORPUS[:3], hash_embed, k=1, brute_force_threshold=5)
    assert search.index == "exact"
    search.add(CORPUS[3:])
    assert search.index == "hnsw"
    _check_top1(search)


def test_load_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    Embeddings(CORPUS, hash_embed).save(tmp_path / "ok")
    # A pickled (object) array must never be unpickled.
    np.save(tmp_path / "ok" / "corpus_embeddings.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(dspex.DataError, match="unreadable"):
        Embeddings.from_saved(tmp_path / "ok", hash_embed)
    with pytest.raises(dspex.DataError, match="not a saved Embeddings index"):
        Embeddings.from_saved(tmp_path / "missing", hash_embed)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(dspex.UserError, match="not a saved index"):
        Embeddings(CORPUS, hash_embed).save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_bad_arguments_fail_before_any_embedding() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> list[list[float]]:
        calls.append(texts)
        return hash_embed(texts)

    with pytest.raises(dspex.UserError, match="k=0"):
        Embeddings(CORPUS, embed, k=0)
    with pytest.raises(dspex.UserError, match="index="):
        Embeddings(CORPUS, embed, index="ivf")
    with pytest.raises(dspex.UserError, match="cache"):
        Embeddings(CORPUS, embed, cache=True)
    assert calls == []
    search = Embeddings(CORPUS, embed)
    with pytest.raises(dspex.UserError, match="query string"):
        search(["two", "queries"])  # type: ignore[arg-type]
    with pytest.raises(dspex.UserError, match="empty"):
        search("  ")
    assert len(calls) == 1  # the corpus only


def test_bm25_top_k() -> None:
    bm25 = BM25(CORPUS, k=3)
    _check_top1(bm25)
    assert bm25("quantum chromodynamics").passages == []  # no shared word: nothing
    with_ids = BM25(CORPUS, ids=[f"doc{i}" for i in range(8)], k=1)
    assert with_ids("longest river").indices == ["doc2"]


def test_bm25_save_load(tmp_path: Path) -> None:
    bm25 = BM25(CORPUS, ids=[f"doc{i}" for i in range(8)], k=2, k1=1.2, stopwords=None)
    bm25.save(tmp_path / "bm25")
    loaded = BM25.from_saved(tmp_path / "bm25")
    assert (loaded.k, loaded.params["k1"], loaded.stopwords) == (2, 1.2, None)
    for question in QUESTIONS:
        assert loaded(question).indices == bm25(question).indices
    with pytest.raises(dspex.UserError, match="stemmer"):
        BM25.from_saved(tmp_path / "bm25", stemmer=str.lower)


def test_hybrid_fuses_by_reciprocal_rank() -> None:
    dense = Embeddings(CORPUS, hash_embed)
    sparse = BM25(CORPUS)
    hybrid = Hybrid([dense, sparse], k=3)
    _check_top1(hybrid, ids=True)  # a fused passage keeps its id (a string)
    # The fused score is sum(1 / (rrf_k + rank)) over the lists a passage is in.
    top = hybrid.search("Which river is the longest in Africa?", k=1)[0]
    ranks = top.metadata["ranks"]
    assert top.score == pytest.approx(sum(1 / (60 + r) for r in ranks if r is not None))
    with pytest.raises(dspex.UserError, match="Retriever"):
        Hybrid([hash_embed], k=1)  # type: ignore[list-item]


def test_retrieve_uses_the_configured_rm() -> None:
    bm25 = BM25(CORPUS)
    with pytest.raises(dspex.ConfigurationError, match="rm="):
        dspex.Retrieve(k=1)(query="longest river")
    with dspex.context(rm=bm25):
        pred = dspex.Retrieve(k=2)(query="Which river is the longest in Africa?")
    assert pred.passages == [CORPUS[2]]  # BM25 returns only passages sharing a word
    dspex.configure(rm=bm25)
    assert dspex.Retrieve()("highest mountain", k=1).passages == [CORPUS[3]]

    # A DSPy-style rm: a callable returning dotdict-like passages with long_text.
    def colbert_like(query: str, k: int) -> list[dict[str, object]]:
        return [{"long_text": CORPUS[i], "pid": i, "score": 1.0 / (i + 1)} for i in range(k)]

    with dspex.context(rm=colbert_like):
        assert dspex.Retrieve(k=2)("anything").passages == CORPUS[:2]
