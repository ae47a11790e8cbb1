"""QdrantRM against Qdrant's local mode (the real engine, in memory and on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import QdrantClient

import dspex
from dspex.errors import DataError, RetrievalError, UserError
from dspex.retrievers import QdrantRM
from tests.retrievers._vectors import CORPUS, IDS, METADATAS, embed


@pytest.fixture(scope="module")
def rm() -> QdrantRM:
    return QdrantRM.from_corpus(
        CORPUS, embed, collection_name="facts", ids=IDS, metadatas=METADATAS, k=2
    )


def test_round_trip_top_k_with_ids_scores_and_metadata(rm: QdrantRM) -> None:
    top = rm.search("Which city is the capital of Italy?")
    assert len(top) == 2
    assert top[0].id == "rome"
    assert top[0].text == CORPUS[2]
    assert top[0].metadata == {"topic": "city"}
    assert top[0].score is not None and top[1].score is not None
    assert top[0].score > top[1].score
    assert rm("highest mountain", k=1).passages == [CORPUS[4]]
    assert rm("largest ocean", k=1).indices == ["pacific"]
    assert dspex.Retrieve(k=1, rm=rm)(query="capital of France").passages == [CORPUS[0]]


def test_on_disk_collection_survives_a_new_client(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    QdrantRM.from_corpus(CORPUS[:3], embed, client=client, collection_name="cities")
    client.close()
    reopened = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        rm = QdrantRM("cities", reopened, embedder=embed, k=1)
        assert rm("capital of Germany").passages == [CORPUS[1]]
        # Adding continues the positional ids and is searchable at once.
        rm.add(["Madrid is the capital of Spain."])
        assert [(p.id, p.text) for p in rm.search("capital of Spain")] == [
            ("3", "Madrid is the capital of Spain.")
        ]
        # DSPy's argument name for the embedder works the same.
        assert QdrantRM("cities", reopened, vectorizer=embed, k=1).search("Spain")[0].id == "3"
    finally:
        reopened.close()


def test_missing_collection_and_wrong_embedder_are_retrieval_errors(rm: QdrantRM) -> None:
    with pytest.raises(RetrievalError, match="'nowhere'"):
        QdrantRM("nowhere", rm.client, embedder=embed)("capital")
    with pytest.raises(RetrievalError, match="embedder"):
        QdrantRM("facts", rm.client, embedder=lambda texts: [[1.0, 0.0]] * len(texts))("x")


def test_bad_arguments_are_user_errors(rm: QdrantRM) -> None:
    with pytest.raises(UserError, match="QdrantClient"):
        QdrantRM("facts", object(), embedder=embed)
    with pytest.raises(UserError, match="embedder"):
        QdrantRM("facts", rm.client)
    with pytest.raises(UserError, match="once"):
        QdrantRM("facts", rm.client, vectorizer=embed, embedder=embed)
    with pytest.raises(UserError, match="distance"):
        rm.add(["x"], distance="hamming")
    with pytest.raises(DataError, match="'document'"):
        rm.add(["x"], metadatas=[{"document": "clash"}])
    with pytest.raises(UserError, match="one vector per text"):
        QdrantRM("facts", rm.client, embedder=lambda texts: [[1.0], [2.0]])("a query")
    with pytest.raises(UserError, match="one id each"):
        rm.add(["a", "b"], ids=["only-one"])


def test_named_vectors_are_found_as_dspy_does() -> None:
    client = QdrantClient(":memory:")
    QdrantRM("named", client, vector_name="dense", embedder=embed).add(CORPUS, ids=IDS)
    # No vector_name: the collection's first named vector, as DSPy's QdrantRM picks it.
    assert QdrantRM("named", client, embedder=embed, k=1)("largest ocean").indices == ["pacific"]
