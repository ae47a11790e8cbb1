"""A RAG program as an MLflow model directory: its index is saved beside its JSON state as
files (never pickled), sealed by the manifest, and rebuilt with the loading process's
embedder; a retriever that cannot be saved as files is refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dspex
import dspex.mlflow
from dspex.datasets import RAG, load_task
from dspex.errors import ProgramIntegrityError, UserError
from dspex.retrievers import CallableRetriever
from dspex.testing import SimulatedLM, hash_embed

TASK = load_task("rag")
CORPUS = TASK.corpus[:300]


def _index() -> dspex.retrievers.Embeddings:
    return dspex.retrievers.Embeddings(
        corpus=[p["text"] for p in CORPUS], embedder=hash_embed, k=2, ids=[p["id"] for p in CORPUS]
    )


def test_the_index_travels_as_sealed_files_and_comes_back_with_this_process_embedder(
    tmp_path: Path,
) -> None:
    rag = RAG(k=2, rm=_index())
    rag.generate.predict.signature = rag.generate.predict.signature.with_instructions(
        "Answer only from the context."
    )
    dspex.mlflow.save_model(rag, tmp_path / "model")

    data = tmp_path / "model" / "data" / "dspex"
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert any(f.startswith("retrievers/retrieve/") and f.endswith(".npy") for f in files)
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
    (entry,) = json.loads((data / "dspex.json").read_text())["retrievers"]
    assert entry["path"] == "retrieve" and entry["kind"] == "Embeddings"
    assert entry["embedder"] is None  # a callable: the loading process must pass one

    with pytest.raises(UserError, match="embedder="):
        dspex.mlflow.load_model(str(tmp_path / "model"))
    calls: list[int] = []

    def embed(texts: list[str]) -> object:
        calls.append(len(texts))
        return hash_embed(texts)

    loaded = dspex.mlflow.load_model(str(tmp_path / "model"), embedder=embed)
    assert isinstance(loaded, RAG) and loaded.retrieve.k == 2
    assert loaded.generate.predict.signature.instructions == "Answer only from the context."
    ex = next(e for e in TASK.examples if e.passage_id in {p["id"] for p in CORPUS})
    assert ex.passage_id in loaded.retrieve.rm(ex.question).indices
    assert calls == [1]  # the corpus was not embedded again, only the query
    with dspex.context(lm=SimulatedLM("rag", cache=False)):
        assert loaded(question=ex.question).answer

    # An edited index is refused, and nothing is loaded.
    vectors = next((data / "retrievers" / "retrieve").glob("*.npy"))
    raw = bytearray(vectors.read_bytes())
    raw[-1] ^= 0xFF
    vectors.write_bytes(bytes(raw))
    with pytest.raises(ProgramIntegrityError, match="index does not match"):
        dspex.mlflow.load_model(str(tmp_path / "model"), embedder=embed)


def test_bm25_travels_too_a_retriever_that_is_not_files_is_refused_a_context_rm_logs_k(
    tmp_path: Path,
) -> None:
    bm25 = dspex.retrievers.BM25([p["text"] for p in CORPUS], k=2, ids=[p["id"] for p in CORPUS])
    dspex.mlflow.save_model(RAG(k=2, rm=bm25), tmp_path / "bm25")
    loaded = dspex.mlflow.load_model(str(tmp_path / "bm25"))
    question = TASK.examples[0].question
    assert loaded.retrieve.rm(question).indices == bm25(question).indices

    remote = CallableRetriever(lambda query, k: ["a passage"][:k])
    with pytest.raises(UserError, match="configure the retriever in the serving process"):
        dspex.mlflow.save_model(RAG(rm=remote), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()

    dspex.mlflow.save_model(RAG(), tmp_path / "model")  # uses the context's rm when it runs
    manifest = json.loads((tmp_path / "model" / "data" / "dspex" / "dspex.json").read_text())
    assert manifest["retrievers"] == [{"path": "retrieve", "k": 3}]  # no index: only k
    loaded = dspex.mlflow.load_model(str(tmp_path / "model"))
    assert loaded.retrieve.rm is None
    with dspex.context(rm=_index()):
        assert len(loaded.retrieve(TASK.examples[0].question).passages) == 3


def test_a_cached_index_copy_edited_since_is_replaced_not_trusted(tmp_path: Path) -> None:
    import numpy as np

    from dspex.integrations.mlflow._retrievers import _index_root

    dspex.mlflow.save_model(RAG(k=2, rm=_index()), tmp_path / "model")
    first = dspex.mlflow.load_model(str(tmp_path / "model"), embedder=hash_embed)
    ex = next(e for e in TASK.examples if e.passage_id in {p["id"] for p in CORPUS})
    expected = first.retrieve.rm(ex.question).indices

    # Tamper with the content-addressed copy every later load of this index reuses.
    copies = [p for p in _index_root().iterdir() if p.is_dir()]
    for copy in copies:
        for vectors in copy.glob("*.npy"):
            np.save(vectors, -np.load(vectors))  # reverses every ranking
    again = dspex.mlflow.load_model(str(tmp_path / "model"), embedder=hash_embed)
    assert again.retrieve.rm(ex.question).indices == expected
