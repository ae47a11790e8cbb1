"""Retrieval: embedders, a dense index, BM25, hybrid fusion and retriever clients.

Every retriever is a :class:`Retriever`: ``retriever(query, k=None)`` returns DSPy's
``Prediction(passages=[...], indices=[...], scores=[...])``, ``retriever.search(query)`` the
typed :class:`Passage` values, and each call is a ``retrieve`` span and trace row.

The engines (numpy, the vector index, bm25s, HTTP clients) are imported on first use, so
``import dspex`` stays light.

Example:
    >>> import dspex
    >>> rm = dspex.retrievers.CallableRetriever(lambda query, k: ["Paris", "Rome"][:k], k=1)
    >>> rm("capital of France").passages
    ['Paris']
"""

from __future__ import annotations

import typing as _typing

from dspex.retrievers._base import CallableRetriever, Passage, Retriever

if _typing.TYPE_CHECKING:
    from dspex.retrievers._bm25 import BM25
    from dspex.retrievers._chroma import ChromadbRM
    from dspex.retrievers._colbert import ColBERTv2
    from dspex.retrievers._embedder import Embedder, EmbedResult
    from dspex.retrievers._embeddings import Embeddings, EmbeddingsWithScores
    from dspex.retrievers._hybrid import Hybrid
    from dspex.retrievers._pinecone import PineconeRM
    from dspex.retrievers._qdrant import QdrantRM
    from dspex.retrievers._weaviate import WeaviateRM

# Imported on first use (PEP 562): each pulls in numpy or an engine.
_LAZY = {
    "BM25": "dspex.retrievers._bm25",
    "ChromadbRM": "dspex.retrievers._chroma",
    "ColBERTv2": "dspex.retrievers._colbert",
    "EmbedResult": "dspex.retrievers._embedder",
    "Embedder": "dspex.retrievers._embedder",
    "Embeddings": "dspex.retrievers._embeddings",
    "EmbeddingsWithScores": "dspex.retrievers._embeddings",
    "Hybrid": "dspex.retrievers._hybrid",
    # Clients of search servers and vector databases: each engine's client is imported only
    # when one is made (the `qdrant`, `chroma`, `weaviate`, `pinecone` extras).
    "PineconeRM": "dspex.retrievers._pinecone",
    "QdrantRM": "dspex.retrievers._qdrant",
    "WeaviateRM": "dspex.retrievers._weaviate",
}


def __getattr__(name: str) -> _typing.Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dspex.retrievers' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BM25",
    "CallableRetriever",
    "ChromadbRM",
    "ColBERTv2",
    "EmbedResult",
    "Embedder",
    "Embeddings",
    "EmbeddingsWithScores",
    "Hybrid",
    "Passage",
    "PineconeRM",
    "QdrantRM",
    "Retriever",
    "WeaviateRM",
]
