"""``WeaviateRM``: search a Weaviate collection through the official ``weaviate-client`` (v4).

DSPy's ``WeaviateRM`` with its arguments. Without an ``embedder`` the search is DSPy's: a
``hybrid`` query (BM25 plus the collection's own server-side vectorizer); with one, dspex
embeds the query and runs ``near_vector`` (for collections that store your vectors).
Passages carry the object's UUID as their id, the score (``hybrid``'s score, or
``-distance`` for ``near_vector``) and the other properties as metadata.

Weaviate runs as a server: nothing here is exercised against one in dspex's tests (they run
offline with no container), only the argument checks made before any request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dspex._redact import redact_text
from dspex.errors import RetrievalError, UserError
from dspex.retrievers._base import Passage, Retriever
from dspex.retrievers._vectordb import check_embedder, corpus_of, embed, require_engine

__all__ = ["WeaviateRM"]


class WeaviateRM(Retriever):
    """Top-k passages from a Weaviate collection.

    Args:
        weaviate_collection_name: the collection.
        weaviate_client: a v4 ``weaviate.WeaviateClient`` (``weaviate.connect_to_local()``,
            ``weaviate.connect_to_weaviate_cloud(...)``, ...).
        weaviate_collection_text_key: the property holding the passage text.
        k: passages per call when the call does not say.
        tenant_id: the tenant to search, for multi-tenant collections.
        embedder: embeds the query for a ``near_vector`` search; ``None`` runs DSPy's
            ``hybrid`` search with the collection's vectorizer.

    Example:
        >>> import weaviate  # doctest: +SKIP
        >>> client = weaviate.connect_to_local()  # doctest: +SKIP
        >>> rm = WeaviateRM("Passages", client, k=3)  # doctest: +SKIP
        >>> rm("Who wrote Hamlet?").passages  # doctest: +SKIP
    """

    def __init__(
        self,
        weaviate_collection_name: str,
        weaviate_client: Any,
        weaviate_collection_text_key: str = "content",
        k: int = 3,
        tenant_id: str | None = None,
        *,
        embedder: Any = None,
    ) -> None:
        super().__init__(k=k)
        if not isinstance(weaviate_collection_name, str) or not weaviate_collection_name:
            raise UserError("WeaviateRM needs weaviate_collection_name, the collection's name.")
        if not isinstance(weaviate_collection_text_key, str) or not weaviate_collection_text_key:
            raise UserError("WeaviateRM(weaviate_collection_text_key=...): name the text property.")
        if tenant_id is not None and (not isinstance(tenant_id, str) or not tenant_id):
            raise UserError(f"WeaviateRM(tenant_id={tenant_id!r}): pass the tenant's name.")
        self.embedder = check_embedder(embedder, "WeaviateRM", required=False)
        weaviate = require_engine("weaviate", "weaviate")
        if not isinstance(weaviate_client, weaviate.WeaviateClient):
            raise UserError(
                f"WeaviateRM needs a v4 weaviate.WeaviateClient (e.g. weaviate.connect_to_local()"
                f"), got {type(weaviate_client).__name__}; the v3 weaviate.Client is gone."
            )
        self.collection_name = weaviate_collection_name
        self.text_key = weaviate_collection_text_key
        self.tenant_id = tenant_id
        self.client = weaviate_client
        # A local handle: no request is sent until a query.
        collection = weaviate_client.collections.use(weaviate_collection_name)
        self.collection = collection.with_tenant(tenant_id) if tenant_id else collection

    def __repr__(self) -> str:
        return f"WeaviateRM({self.collection_name!r}, k={self.k})"

    def add(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str | int] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 256,
    ) -> list[str]:
        """Insert passages (with their vectors when there is an embedder, else vectorized by
        the collection) and return their UUIDs, derived from the ids (positions by default),
        so one id always names one object."""
        util = require_engine("weaviate.util", "weaviate")
        classes = require_engine("weaviate.classes.data", "weaviate")
        corpus = corpus_of(texts, ids, metadatas, reserved=(self.text_key,))
        uuids: list[str] = []
        for batch in corpus.batches(batch_size):
            vectors: list[Any] = (
                embed(self.embedder, batch.texts, "WeaviateRM")
                if self.embedder is not None
                else [None] * len(batch.texts)
            )
            objects = [
                classes.DataObject(
                    properties={self.text_key: text, **meta},
                    uuid=util.generate_uuid5(pid, self.collection_name),
                    vector=vector,
                )
                for pid, text, meta, vector in zip(
                    batch.ids, batch.texts, batch.metadatas, vectors, strict=True
                )
            ]
            with _sdk_errors("insert", self.collection_name):
                result = self.collection.data.insert_many(objects)
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise RetrievalError(
                    f"Weaviate refused {len(result.errors)} of {len(objects)} objects in "
                    f"{self.collection_name!r}, e.g.: {first.message}"
                )
            uuids.extend(str(o.uuid) for o in objects)
        return uuids

    def _search(self, query: str, k: int) -> list[Passage]:
        query_classes = require_engine("weaviate.classes.query", "weaviate")
        if self.embedder is None:
            with _sdk_errors("hybrid search", self.collection_name):
                response = self.collection.query.hybrid(
                    query=query,
                    limit=k,
                    return_metadata=query_classes.MetadataQuery(score=True),
                )
        else:
            (vector,) = embed(self.embedder, [query], "WeaviateRM")
            with _sdk_errors("near_vector search", self.collection_name):
                response = self.collection.query.near_vector(
                    near_vector=vector,
                    limit=k,
                    return_metadata=query_classes.MetadataQuery(distance=True),
                )
        return [self._passage(obj) for obj in response.objects]

    def _passage(self, obj: Any) -> Passage:
        properties = dict(obj.properties or {})
        text = properties.pop(self.text_key, None)
        if not isinstance(text, str):
            raise RetrievalError(
                f"Weaviate object {obj.uuid} has no text property {self.text_key!r}; pass "
                "weaviate_collection_text_key= the property that holds it."
            )
        meta = obj.metadata
        score: float | None
        if self.embedder is None:
            score = meta.score
        else:
            score = None if meta.distance is None else -meta.distance
            properties["distance"] = meta.distance
        return Passage(
            id=str(obj.uuid),
            text=text,
            score=None if score is None else float(score),
            metadata=properties,
        )


@contextlib.contextmanager
def _sdk_errors(what: str, collection: str) -> Iterator[None]:
    """Turns the client's errors (``weaviate.exceptions.WeaviateBaseError``) into
    ``RetrievalError``."""
    try:
        yield
    except Exception as e:
        exceptions = require_engine("weaviate.exceptions", "weaviate")
        if isinstance(e, exceptions.WeaviateBaseError):
            raise RetrievalError(
                f"Weaviate {what} in {collection!r} failed ({type(e).__name__}: "
                f"{redact_text(str(e))}). Check that the server is up and the collection exists.",
                retryable=isinstance(
                    e, exceptions.WeaviateConnectionError | exceptions.WeaviateTimeoutError
                ),
            ) from None
        raise
