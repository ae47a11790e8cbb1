"""What the retriever clients check before any request, and the install hint each engine's
extra gives. Weaviate and Pinecone run as servers (Pinecone only hosted), which these offline
tests cannot reach: their searches are not exercised against a server here (docs/retrieval.md
says so); Pinecone's SDK is, against a closed loopback port, for its error path."""

from __future__ import annotations

import socket
import sys

import pytest

from dspex.errors import ConfigurationError, RetrievalError, UserError
from dspex.retrievers import ChromadbRM, PineconeRM, QdrantRM, WeaviateRM
from tests.retrievers._vectors import embed


@pytest.mark.parametrize(
    ("module", "extra", "make"),
    [
        ("qdrant_client", "qdrant", lambda: QdrantRM("facts", object(), embedder=embed)),
        ("chromadb", "chroma", lambda: ChromadbRM("facts", embedder=embed)),
        ("weaviate", "weaviate", lambda: WeaviateRM("Facts", object())),
        ("pinecone", "pinecone", lambda: PineconeRM("facts", "pc-key", embedder=embed)),
    ],
)
def test_a_missing_engine_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, extra: str, make: object
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like
    with pytest.raises(ConfigurationError, match=rf"pip install 'dspex\[{extra}\]'"):
        make()  # type: ignore[operator]


def test_weaviate_arguments_are_checked_before_the_client() -> None:
    # These fail the same whether or not weaviate-client is installed: checked first.
    with pytest.raises(UserError, match="weaviate_collection_name"):
        WeaviateRM("", object())
    with pytest.raises(UserError, match="text property"):
        WeaviateRM("Facts", object(), weaviate_collection_text_key="")
    with pytest.raises(UserError, match="tenant"):
        WeaviateRM("Facts", object(), tenant_id="")
    with pytest.raises(UserError, match="embedder"):
        WeaviateRM("Facts", object(), embedder="text-embedding-3-small")


def test_pinecone_arguments_and_key_are_checked_without_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(UserError, match="needs the index"):
        PineconeRM(embedder=embed)
    with pytest.raises(ConfigurationError, match="PINECONE_API_KEY"):
        PineconeRM("facts", embedder=embed)
    with pytest.raises(UserError, match="text_key"):
        PineconeRM("facts", "pc-key", text_key="")
    with pytest.raises(UserError, match="embedder"):
        PineconeRM("facts", "pc-key", embedder=42)
    # Naming an index costs a lookup: nothing is sent until the first search.
    monkeypatch.setenv("PINECONE_API_KEY", "pc-secret-from-env")
    rm = PineconeRM("facts", embedder=embed, namespace="wiki", k=4)
    assert rm.k == 4
    assert "pc-secret" not in repr(rm)


def test_pinecone_sdk_failures_are_retrieval_errors() -> None:
    # The real SDK against a loopback port nothing listens on: its connection error, not a
    # stand-in, is what PineconeRM must turn into a RetrievalError.
    from pinecone import Pinecone, RetryConfig

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Pinecone(api_key="pc-key", retry_config=RetryConfig(max_retries=0))
    index = client.Index(host=f"http://127.0.0.1:{port}")
    with pytest.raises(RetrievalError, match="Connection refused") as info:
        PineconeRM(index=index, embedder=embed)("capital of France")
    assert info.value.retryable
