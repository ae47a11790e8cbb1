"""A retriever's fingerprint is part of its program's identity: two programs that differ only
in their retriever's index are different runs (Prefect cache keys, MLflow run resume), two
identical ones are the same run, and a compile over a rebuilt index does not reuse the first
run's results."""

from __future__ import annotations

from pathlib import Path

import dspex
from dspex.datasets import RAG, load_task
from dspex.optimize import program_fingerprint
from dspex.retrievers import (
    BM25,
    CallableRetriever,
    ColBERTv2,
    Embedder,
    Embeddings,
    QdrantRM,
)
from dspex.testing import RunningServer, SimulatedLM, hash_embed

CORPUS = ["Paris is in France.", "Rome is in Italy.", "Oslo is in Norway."]


def _search(query: str, k: int) -> list[str]:
    return CORPUS[:k]


def _other_search(query: str, k: int) -> list[str]:
    return CORPUS[-k:]


def test_same_index_same_fingerprint_changed_index_another() -> None:
    a = BM25(CORPUS)
    assert a.fingerprint() == BM25(list(CORPUS)).fingerprint()
    assert a.fingerprint() != BM25([*CORPUS[:2], "Oslo is in Sweden."]).fingerprint()
    assert a.fingerprint() != BM25(CORPUS, ids=["a", "b", "c"]).fingerprint()
    assert a.fingerprint() != BM25(CORPUS, k1=1.2).fingerprint()
    assert a.fingerprint() != BM25(CORPUS, k=2).fingerprint()


def test_embeddings_fingerprint_survives_save_and_follows_add(tmp_path: Path) -> None:
    dense = Embeddings(CORPUS, hash_embed, k=1)
    before = dense.fingerprint()
    assert before == Embeddings(list(CORPUS), hash_embed, k=1).fingerprint()
    assert before != Embeddings(CORPUS, hash_embed, k=1, normalize=False).fingerprint()
    dense.save(tmp_path / "index")
    assert Embeddings.from_saved(tmp_path / "index", hash_embed).fingerprint() == before
    dense.add(["Lima is in Peru."])
    assert dense.fingerprint() != before
    assert (
        dense.fingerprint()
        == Embeddings([*CORPUS, "Lima is in Peru."], hash_embed, k=1).fingerprint()
    )


def test_an_embedder_counts_by_its_models_name_not_its_endpoint_or_key(
    embed_server: RunningServer,
) -> None:
    def index(model: str, key: str) -> str:
        embedder = Embedder(model, api_base=embed_server.url, api_key=key, caching=False)
        return Embeddings(CORPUS, embedder, k=1).fingerprint()

    assert index("openai/hash-a", "one") == index("openai/hash-a", "two")
    assert index("openai/hash-a", "one") != index("openai/hash-b", "one")


def test_external_engines_and_callables_are_described_without_credentials() -> None:
    def colbert(url: str) -> str:
        return ColBERTv2(url=url).fingerprint()

    assert colbert("http://127.0.0.1:9/wiki?api_key=one") == colbert(
        "http://127.0.0.1:9/wiki?api_key=two"
    )
    assert colbert("http://127.0.0.1:9/wiki") != colbert("http://127.0.0.1:9/news")
    assert CallableRetriever(_search).fingerprint() == CallableRetriever(_search).fingerprint()
    assert (
        CallableRetriever(_search).fingerprint() != CallableRetriever(_other_search).fingerprint()
    )


def test_a_vector_database_client_is_described_by_its_collection() -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    rm = QdrantRM.from_corpus(CORPUS, hash_embed, client=client, collection_name="a")
    before = rm.fingerprint()
    assert rm("France").passages  # the first search looks up the vector name
    assert rm.fingerprint() == before == QdrantRM("a", client, embedder=hash_embed).fingerprint()
    other = QdrantRM.from_corpus(CORPUS, hash_embed, client=client, collection_name="b")
    assert other.fingerprint() != before


def test_program_fingerprint_folds_in_its_retrievers() -> None:
    assert program_fingerprint(RAG(rm=BM25(CORPUS))) == program_fingerprint(RAG(rm=BM25(CORPUS)))
    assert program_fingerprint(RAG(rm=BM25(CORPUS))) != program_fingerprint(
        RAG(rm=BM25(CORPUS[:2]))
    )
    # A DSPy-style callable rm counts by its qualified name.
    assert program_fingerprint(RAG(rm=_search)) != program_fingerprint(RAG(rm=_other_search))

    # A Retrieve without its own rm counts the context's, where the fingerprint is taken.
    bare = RAG()
    with dspex.context(rm=BM25(CORPUS)):
        first = program_fingerprint(bare)
    with dspex.context(rm=BM25(CORPUS[:2])):
        second = program_fingerprint(bare)
    with dspex.context(rm=BM25(CORPUS)):
        again = program_fingerprint(bare)
    assert first != second and first == again != program_fingerprint(bare)


TASK = load_task("rag")
TRAIN = TASK.split(train=4, dev=1, test=1, seed=0)[0]


def _exact(example: dspex.Example, prediction: dspex.Prediction, trace: object = None) -> bool:
    return bool(example.answer == prediction.answer)


def _compile(corpus: list[str], runs: Path) -> RAG:
    opt = dspex.BootstrapFewShot(_exact, max_bootstrapped_demos=2, max_labeled_demos=0)
    lm = SimulatedLM(task=TASK)
    program = RAG(rm=BM25(corpus, k=2))
    best = opt.compile(program, trainset=TRAIN, lm=lm, runs_dir=runs)
    assert isinstance(best, RAG)
    return best


def _contexts(program: RAG) -> list[str]:
    return [p for d in program.generate.predict.demos for p in d.context]


def test_a_compile_over_a_rebuilt_index_reuses_nothing(tmp_path: Path) -> None:
    wanted = {ex.passage_id for ex in TRAIN}
    texts = [p["text"] for p in TASK.corpus if p["id"] in wanted]
    texts += [p["text"] for p in TASK.corpus[:40] if p["id"] not in wanted]
    rebuilt = [f"{t} (rebuilt)" for t in texts]

    first = _compile(texts, tmp_path)
    assert _contexts(first) and not any("(rebuilt)" in c for c in _contexts(first))
    # Same prompts, data and runs directory; only the index changed: its passages are new.
    second = _compile(rebuilt, tmp_path)
    assert _contexts(second) and all(c.endswith("(rebuilt)") for c in _contexts(second))


# What an import-path program's factory opens: a deployment rebuilds its index in place.
INDEX = {"corpus": CORPUS}


def build() -> RAG:
    return RAG(rm=BM25(INDEX["corpus"]))


def test_an_import_path_programs_run_key_follows_the_index_its_factory_opens() -> None:
    from dspex.flows._spine import run_key
    from dspex.optimize import DatasetSpec, OptimizeParams

    def key() -> str:
        return run_key(
            OptimizeParams(
                program=f"{__name__}:build",
                trainset=DatasetSpec(task="rag", train_size=4),
            )
        )

    first = key()
    assert key() == first
    INDEX["corpus"] = CORPUS[:2]
    try:
        assert key() != first
    finally:
        INDEX["corpus"] = CORPUS
