"""ChromadbRM against Chroma's in-process clients (the real engine, in memory and on disk),
always with our own embeddings: Chroma's default embedding function would download a model."""

from __future__ import annotations

import uuid
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

import dspex
from dspex.errors import RetrievalError, UserError
from dspex.retrievers import ChromadbRM
from tests.retrievers._vectors import CORPUS, IDS, METADATAS, embed


def _name() -> str:
    # In-process Chroma clients share one store per process: each test its own collection.
    return f"facts-{uuid.uuid4().hex[:8]}"


def test_round_trip_top_k_with_ids_scores_and_metadata() -> None:
    client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
    rm = ChromadbRM.from_corpus(
        CORPUS, embed, collection_name=_name(), client=client, ids=IDS, metadatas=METADATAS, k=2
    )
    assert rm.collection.configuration["embedding_function"] is None  # never Chroma's default
    top = rm.search("Which city is the capital of Italy?")
    assert len(top) == 2
    assert (top[0].id, top[0].text) == ("rome", CORPUS[2])
    assert top[0].metadata["topic"] == "city"
    # Cosine space: the score is the cosine similarity, 1 - Chroma's distance.
    assert top[0].score == pytest.approx(1 - top[0].metadata["distance"])
    assert top[0].score > top[1].score
    assert rm("highest mountain", k=1).passages == [CORPUS[4]]
    assert dspex.Retrieve(k=1, rm=rm)(query="largest ocean").passages == [CORPUS[5]]


def test_persistent_collection_reopens_with_dspy_arguments(tmp_path: Path) -> None:
    name, path = _name(), str(tmp_path / "chroma")
    ChromadbRM.from_corpus(CORPUS, embed, collection_name=name, persist_directory=path)
    # DSPy's signature: ChromadbRM(collection_name, persist_directory, embedding_function=...)
    rm = ChromadbRM(name, path, embedding_function=embed, k=1)
    assert rm("capital of Germany").indices == ["1"]
    rm.add(["Madrid is the capital of Spain."], metadatas=[{"topic": "city"}])
    assert [(p.id, p.text) for p in rm.search("capital of Spain")] == [
        ("6", "Madrid is the capital of Spain.")
    ]


def test_wrong_embedder_is_a_retrieval_error() -> None:
    rm = ChromadbRM.from_corpus(CORPUS, embed, collection_name=_name())
    other = ChromadbRM(rm.collection_name, client=rm.client, embedder=lambda t: [[1.0, 0.0]])
    with pytest.raises(RetrievalError, match="dimension"):
        other("capital")


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(UserError, match="embedder"):
        ChromadbRM(_name())
    with pytest.raises(UserError, match="once"):
        ChromadbRM(_name(), embedding_function=embed, embedder=embed)
    with pytest.raises(UserError, match="collection_name"):
        ChromadbRM("", embedder=embed)
    with pytest.raises(UserError, match="non-empty list"):
        ChromadbRM.from_corpus("one passage, not a list", embed, collection_name=_name())
