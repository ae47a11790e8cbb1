"""``QdrantRM``: search a Qdrant collection through the official ``qdrant-client``.

Works with every client the library makes: a server (``QdrantClient(url=...)``), Qdrant Cloud,
and the local modes that need no server (``QdrantClient(":memory:")``,
``QdrantClient(path=...)``), which is what the tests run against.

Each point's payload holds the passage text (under ``document_field``), its id as given (Qdrant
itself takes only unsigned ints and UUIDs as point ids) and any metadata.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from dspex._redact import redact_text
from dspex.errors import RetrievalError, UserError
from dspex.retrievers._base import Passage, Retriever
from dspex.retrievers._vectordb import check_embedder, corpus_of, embed, require_engine

__all__ = ["QdrantRM"]

# The payload key that keeps a passage's own id (Qdrant's point ids are ints or UUIDs).
ID_KEY = "id"
_NAMESPACE = uuid.UUID("6f0c3d4e-7f9b-5a27-9d61-0d5e8c3b2a10")
_DISTANCES = {"cosine": "COSINE", "dot": "DOT", "euclid": "EUCLID", "manhattan": "MANHATTAN"}


def point_id(passage_id: str) -> int | str:
    """Qdrant's point id for a passage id: itself when it is an unsigned int or a UUID, else
    a UUID derived from it (stable, so re-adding a passage overwrites it)."""
    if passage_id.isdigit():
        return int(passage_id)
    try:
        return str(uuid.UUID(passage_id))
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, passage_id))


def _errors() -> tuple[type[Exception], ...]:
    """What the client raises for a failed search: ``ValueError`` in local mode (a missing
    collection, a wrong dimension), its HTTP exceptions against a server."""
    exceptions = require_engine("qdrant_client.http.exceptions", "qdrant")
    return (ValueError, exceptions.UnexpectedResponse, exceptions.ResponseHandlingException)


class QdrantRM(Retriever):
    """Top-k passages from a Qdrant collection, the query embedded by ``embedder``.

    Args:
        qdrant_collection_name: the collection.
        qdrant_client: a ``qdrant_client.QdrantClient``.
        k: passages per call when the call does not say.
        document_field: the payload key holding the passage text.
        vectorizer: DSPy's name for the embedder; pass this or ``embedder``.
        vector_name: the named vector to search; by default the collection's first named
            vector when it has named ones (as DSPy's), else its single unnamed one.
        embedder: a ``dspex.Embedder`` or any callable from texts to vectors.

    Passages carry the stored id, Qdrant's score (higher is better for every distance the
    client reports) and the rest of the payload as metadata.

    Example:
        >>> from qdrant_client import QdrantClient  # doctest: +SKIP
        >>> rm = QdrantRM.from_corpus(  # doctest: +SKIP
        ...     ["Paris is in France.", "Rome is in Italy."], embedder=my_embedder,
        ...     client=QdrantClient(":memory:"), collection_name="cities")
        >>> rm("Where is Rome?", k=1).passages  # doctest: +SKIP
        ['Rome is in Italy.']
    """

    def __init__(
        self,
        qdrant_collection_name: str,
        qdrant_client: Any,
        k: int = 3,
        document_field: str = "document",
        vectorizer: Any = None,
        vector_name: str | None = None,
        *,
        embedder: Any = None,
    ) -> None:
        super().__init__(k=k)
        if not isinstance(qdrant_collection_name, str) or not qdrant_collection_name:
            raise UserError("QdrantRM needs qdrant_collection_name, the collection's name.")
        if vectorizer is not None and embedder is not None:
            raise UserError("Pass the embedder once: embedder=... (or DSPy's vectorizer=...).")
        qdrant = require_engine("qdrant_client", "qdrant")
        if not isinstance(qdrant_client, qdrant.QdrantClient):
            raise UserError(
                f"QdrantRM needs a qdrant_client.QdrantClient, got {type(qdrant_client).__name__}"
                " (e.g. QdrantClient(':memory:'), QdrantClient(path=...), QdrantClient(url=...))."
            )
        if not isinstance(document_field, str) or document_field == ID_KEY:
            raise UserError(f"document_field={document_field!r}: name another payload key.")
        self.collection_name = qdrant_collection_name
        self.client = qdrant_client
        self.document_field = document_field
        self.vector_name = vector_name
        self._looked_up = vector_name is not None
        self._vector_name_given = vector_name
        self.embedder = check_embedder(embedder if vectorizer is None else vectorizer, "QdrantRM")

    @classmethod
    def from_corpus(
        cls,
        corpus: Sequence[str],
        embedder: Any,
        *,
        client: Any = None,
        collection_name: str = "dspex",
        ids: Sequence[str | int] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        k: int = 3,
        distance: str = "cosine",
    ) -> QdrantRM:
        """Store ``corpus`` in a collection (made if missing) and return its retriever.

        Args:
            corpus: the passages.
            embedder: embeds the passages now and the queries later.
            client: a ``QdrantClient``; by default an in-memory one (``":memory:"``).
            collection_name: the collection to create or add to.
            ids / metadatas: one per passage (ids default to positions).
            k: passages per call.
            distance: ``cosine``, ``dot``, ``euclid`` or ``manhattan``, for a new collection.
        """
        if client is None:
            client = require_engine("qdrant_client", "qdrant").QdrantClient(":memory:")
        rm = cls(collection_name, client, k=k, embedder=embedder)
        rm.add(corpus, ids=ids, metadatas=metadatas, distance=distance)
        return rm

    def add(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str | int] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 256,
        distance: str = "cosine",
    ) -> None:
        """Embed and upsert passages; the collection is made on the first add if missing,
        with ``distance`` (``cosine``, ``dot``, ``euclid`` or ``manhattan``).

        A passage whose id is already stored is replaced. Ids default to positions after the
        collection's current count.
        """
        if distance not in _DISTANCES:
            raise UserError(f"distance={distance!r}: pass one of {sorted(_DISTANCES)}.")
        start = 0 if ids is not None else self._count()
        corpus = corpus_of(
            texts, ids, metadatas, reserved=(self.document_field, ID_KEY), start=start
        )
        models = require_engine("qdrant_client.models", "qdrant")
        for batch in corpus.batches(batch_size):
            vectors = embed(self.embedder, batch.texts, "QdrantRM")
            self._ensure_collection(len(vectors[0]), distance)
            points = [
                models.PointStruct(
                    id=point_id(pid),
                    vector={self.vector_name: vector} if self.vector_name else vector,
                    payload={self.document_field: text, ID_KEY: pid, **meta},
                )
                for pid, text, vector, meta in zip(
                    batch.ids, batch.texts, vectors, batch.metadatas, strict=True
                )
            ]
            self.client.upsert(self.collection_name, points=points, wait=True)

    def _count(self) -> int:
        if not self.client.collection_exists(self.collection_name):
            return 0
        return int(self.client.count(self.collection_name, exact=True).count)

    def _ensure_collection(self, dim: int, distance: str) -> None:
        if self.client.collection_exists(self.collection_name):
            return
        models = require_engine("qdrant_client.models", "qdrant")
        params = models.VectorParams(
            size=dim, distance=getattr(models.Distance, _DISTANCES[distance])
        )
        self.client.create_collection(
            self.collection_name,
            vectors_config={self.vector_name: params} if self.vector_name else params,
        )

    def _search(self, query: str, k: int) -> list[Passage]:
        (vector,) = embed(self.embedder, [query], "QdrantRM")
        try:
            response = self.client.query_points(
                self.collection_name,
                query=vector,
                using=self._using(),
                limit=k,
                with_payload=True,
            )
        except _errors() as e:
            raise RetrievalError(
                f"Qdrant search in {self.collection_name!r} failed "
                f"({type(e).__name__}: {redact_text(str(e))}). "
                "Check that the collection exists and that the embedder is the one it was "
                "built with.",
                retryable=(getattr(e, "status_code", None) or 500) >= 500
                and not isinstance(e, ValueError),
            ) from None
        return [self._passage(point) for point in response.points]

    def _identity(self) -> dict[str, Any]:
        # The first search may look vector_name up: the retriever is the same one after it.
        return {**super()._identity(), "vector_name": self._vector_name_given}

    def _using(self) -> str | None:
        """The vector to search: ``vector_name``, else the first named one, else unnamed
        (looked up once, on the first search of an existing collection)."""
        if self._looked_up or not self.client.collection_exists(self.collection_name):
            return self.vector_name
        vectors = self.client.get_collection(self.collection_name).config.params.vectors
        if isinstance(vectors, Mapping) and vectors:
            self.vector_name = next(iter(vectors))
        self._looked_up = True
        return self.vector_name

    def _passage(self, point: Any) -> Passage:
        payload = dict(point.payload or {})
        text = payload.pop(self.document_field, None)
        if not isinstance(text, str):
            raise RetrievalError(
                f"Qdrant point {point.id} in {self.collection_name!r} has no text under "
                f"{self.document_field!r}; pass document_field= the payload key that holds it."
            )
        pid = payload.pop(ID_KEY, point.id)
        return Passage(id=str(pid), text=text, score=float(point.score), metadata=payload)

    def __repr__(self) -> str:
        return f"QdrantRM({self.collection_name!r}, k={self.k})"
