"""``ChromadbRM``: search a Chroma collection through the official ``chromadb`` client.

Works with an in-process client (``chromadb.EphemeralClient()``, or
``chromadb.PersistentClient(path)``, which the tests run against) and with a Chroma server
(``chromadb.HttpClient(...)``). dspex always sends its own query embeddings: Chroma's default
embedding function downloads a model on first use, which dspex never triggers.

Chroma answers distances (lower is nearer); passages carry a score where higher is better:
``1 - distance`` for the ``cosine`` and ``ip`` spaces (the cosine similarity, the inner
product), ``-distance`` for ``l2``; the raw ``distance`` is in the metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dspex._redact import redact_text
from dspex.errors import RetrievalError, UserError
from dspex.retrievers._base import Passage, Retriever
from dspex.retrievers._vectordb import check_embedder, corpus_of, embed, require_engine

__all__ = ["ChromadbRM"]


def _client(persist_directory: str | None) -> Any:
    chromadb = require_engine("chromadb", "chroma")
    settings = chromadb.config.Settings(anonymized_telemetry=False)
    if persist_directory is None:
        return chromadb.EphemeralClient(settings=settings)
    return chromadb.PersistentClient(path=str(persist_directory), settings=settings)


class ChromadbRM(Retriever):
    """Top-k passages from a Chroma collection, the query embedded by ``embedder``.

    Args:
        collection_name: the collection (made if missing, with the ``cosine`` space).
        persist_directory: a directory for a ``chromadb.PersistentClient``; ``None`` with no
            ``client`` keeps the collection in memory.
        embedding_function: DSPy's name for the embedder; pass this or ``embedder``.
        client: a Chroma client (``EphemeralClient``, ``PersistentClient``, ``HttpClient``);
            overrides ``persist_directory``.
        k: passages per call when the call does not say.
        embedder: a ``dspex.Embedder`` or any callable from texts to vectors.

    Example:
        >>> import chromadb  # doctest: +SKIP
        >>> rm = ChromadbRM.from_corpus(  # doctest: +SKIP
        ...     ["Paris is in France.", "Rome is in Italy."], embedder=my_embedder,
        ...     collection_name="cities", client=chromadb.EphemeralClient())
        >>> rm("Where is Rome?", k=1).passages  # doctest: +SKIP
        ['Rome is in Italy.']
    """

    def __init__(
        self,
        collection_name: str,
        persist_directory: str | None = None,
        embedding_function: Any = None,
        client: Any = None,
        k: int = 7,
        *,
        embedder: Any = None,
    ) -> None:
        super().__init__(k=k)
        if not isinstance(collection_name, str) or not collection_name:
            raise UserError("ChromadbRM needs collection_name, the collection's name.")
        if embedding_function is not None and embedder is not None:
            raise UserError("Pass the embedder once: embedder=... (or DSPy's embedding_function).")
        self.embedder = check_embedder(
            embedder if embedding_function is None else embedding_function, "ChromadbRM"
        )
        self.client = client if client is not None else _client(persist_directory)
        # No embedding function: Chroma's default would download a model; dspex embeds.
        self.collection = self.client.get_or_create_collection(
            collection_name, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
        self.collection_name = collection_name

    @classmethod
    def from_corpus(
        cls,
        corpus: Sequence[str],
        embedder: Any,
        *,
        collection_name: str = "dspex",
        persist_directory: str | None = None,
        client: Any = None,
        ids: Sequence[str | int] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        k: int = 7,
    ) -> ChromadbRM:
        """Store ``corpus`` in a collection (made if missing) and return its retriever.

        Args:
            corpus: the passages.
            embedder: embeds the passages now and the queries later.
            collection_name / persist_directory / client: where, as for the constructor.
            ids / metadatas: one per passage (ids default to positions).
            k: passages per call.
        """
        rm = cls(
            collection_name,
            persist_directory,
            client=client,
            k=k,
            embedder=check_embedder(embedder, "ChromadbRM.from_corpus"),
        )
        rm.add(corpus, ids=ids, metadatas=metadatas)
        return rm

    def add(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str | int] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 256,
    ) -> None:
        """Embed and upsert passages; a passage whose id is already stored is replaced. Ids
        default to positions after the collection's current count."""
        start = 0 if ids is not None else int(self.collection.count())
        corpus = corpus_of(texts, ids, metadatas, start=start)
        for batch in corpus.batches(batch_size):
            vectors = embed(self.embedder, batch.texts, "ChromadbRM")
            self.collection.upsert(
                ids=batch.ids,
                embeddings=vectors,
                documents=batch.texts,
                # Chroma refuses an empty metadata dict; None stores none.
                metadatas=[m or None for m in batch.metadatas] if any(batch.metadatas) else None,
            )

    def _search(self, query: str, k: int) -> list[Passage]:
        (vector,) = embed(self.embedder, [query], "ChromadbRM")
        chromadb = require_engine("chromadb", "chroma")
        try:
            result = self.collection.query(
                query_embeddings=[vector],
                n_results=k,
                include=["documents", "metadatas", "distances"],
            )
        except chromadb.errors.ChromaError as e:
            raise RetrievalError(
                f"Chroma search in {self.collection_name!r} failed "
                f"({type(e).__name__}: {redact_text(str(e))}). "
                "Check that the embedder is the one the collection was built with."
            ) from None
        space = (self.collection.metadata or {}).get("hnsw:space", "l2")
        rows = zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        )
        return [
            Passage(
                id=str(pid),
                text=str(text),
                score=(1.0 - distance) if space in ("cosine", "ip") else -distance,
                metadata={**(meta or {}), "distance": distance},
            )
            for pid, text, meta, distance in rows
        ]

    def __repr__(self) -> str:
        return f"ChromadbRM({self.collection_name!r}, k={self.k})"
