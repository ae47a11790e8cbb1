"""``PineconeRM``: search a Pinecone index through the official ``pinecone`` SDK (v10).

Two kinds of index are served:

* a vector index (created with a ``dimension`` and ``metric``): dspex embeds the query with
  ``embedder`` and calls ``index.query(vector=...)``; each vector's metadata holds the
  passage text under ``text_key``;
* an integrated index (``pc.indexes.create_for_model``, which embeds text server-side): with
  no ``embedder``, dspex sends the query text (``index.search(inputs={"text": ...})``) and
  reads the text from the hit's fields.

Pinecone is a hosted service: nothing here is exercised against it in dspex's tests (they
run offline), only the argument checks made before any request.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dspex._redact import redact_text, register_secret
from dspex.errors import ConfigurationError, RetrievalError, UserError
from dspex.retrievers._base import Passage, Retriever
from dspex.retrievers._vectordb import check_embedder, corpus_of, embed, require_engine

__all__ = ["PineconeRM"]


class PineconeRM(Retriever):
    """Top-k passages from a Pinecone index.

    Args:
        pinecone_index_name: the index's name (resolved to its host on the first search); or
            pass ``host`` or ``index``.
        pinecone_api_key: the API key; ``$PINECONE_API_KEY`` by default. It is never shown in
            reprs, traces or messages.
        k: passages per call when the call does not say.
        index: a ``pinecone`` ``Index`` you made yourself (``pc.Index(host=...)``).
        host: the index's host URL (skips the name lookup).
        embedder: a ``dspex.Embedder`` or any callable from texts to vectors; ``None`` for an
            integrated index, which embeds the query itself.
        namespace: the namespace to search (``""``: the default one).
        text_key: the metadata key (or record field) holding the passage text.

    Example:
        >>> embedder = dspex.Embedder("openai/text-embedding-3-small")  # doctest: +SKIP
        >>> rm = PineconeRM("wiki", embedder=embedder)  # doctest: +SKIP
        >>> rm("Who wrote Hamlet?", k=3).passages  # doctest: +SKIP
    """

    def __init__(
        self,
        pinecone_index_name: str | None = None,
        pinecone_api_key: str | None = None,
        k: int = 3,
        *,
        index: Any = None,
        host: str | None = None,
        embedder: Any = None,
        namespace: str = "",
        text_key: str = "text",
    ) -> None:
        super().__init__(k=k)
        if index is None and not (pinecone_index_name or host):
            raise UserError(
                "PineconeRM needs the index: pinecone_index_name=..., host=... or index=..."
            )
        for name, value in (("namespace", namespace), ("text_key", text_key)):
            if not isinstance(value, str):
                raise UserError(f"PineconeRM({name}={value!r}): pass a str.")
        if not text_key:
            raise UserError("PineconeRM(text_key=''): name the field that holds the text.")
        self.embedder = check_embedder(embedder, "PineconeRM", required=False)
        self._api_key = pinecone_api_key or os.environ.get("PINECONE_API_KEY")
        if index is None and not self._api_key:
            raise ConfigurationError(
                "PineconeRM needs an API key: pass pinecone_api_key=... or set "
                "PINECONE_API_KEY (or pass index= a pinecone Index you made)."
            )
        register_secret(self._api_key)
        require_engine("pinecone", "pinecone")
        self.index_name = pinecone_index_name
        self.host = host
        self.namespace = namespace
        self.text_key = text_key
        self._index = index

    def __repr__(self) -> str:
        return f"PineconeRM({self._where()!r}, namespace={self.namespace!r}, k={self.k})"

    def _where(self) -> str:
        """The index as messages name it: its name, else its host."""
        host = self.host or getattr(self._index, "host", None)
        return self.index_name or (str(host) if host else "index")

    @property
    def index(self) -> Any:
        """The ``pinecone`` ``Index`` (made on first use: naming an index costs a lookup)."""
        if self._index is None:
            pinecone = require_engine("pinecone", "pinecone")
            client = pinecone.Pinecone(api_key=self._api_key)
            with _sdk_errors("open the index", self._where()):
                self._index = client.Index(name=self.index_name or "", host=self.host or "")
        return self._index

    def add(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str | int] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 100,
    ) -> None:
        """Upsert passages: embedded by ``embedder`` into a vector index, or as text records
        into an integrated index when there is no embedder. Ids default to positions."""
        corpus = corpus_of(texts, ids, metadatas, reserved=(self.text_key, "_id", "id"))
        for batch in corpus.batches(batch_size):
            rows = zip(batch.ids, batch.texts, batch.metadatas, strict=True)
            with _sdk_errors("upsert", self._where()):
                if self.embedder is None:
                    records = [{**m, "_id": i, self.text_key: t} for i, t, m in rows]
                    # The records API names the default namespace; it refuses "".
                    namespace = self.namespace or "__default__"
                    self.index.upsert_records(records=records, namespace=namespace)
                    continue
                vectors = embed(self.embedder, batch.texts, "PineconeRM")
                upserts: list[dict[str, Any]] = [
                    {"id": i, "values": v, "metadata": {**m, self.text_key: t}}
                    for (i, t, m), v in zip(rows, vectors, strict=True)
                ]
                self.index.upsert(
                    vectors=upserts,
                    namespace=self.namespace,
                    show_progress=False,
                )

    def _search(self, query: str, k: int) -> list[Passage]:
        where = self._where()
        if self.embedder is None:
            with _sdk_errors("search", where):
                response = self.index.search(
                    namespace=self.namespace or "__default__", top_k=k, inputs={"text": query}
                )
            hits = [(h.id, h.score, dict(h.fields or {})) for h in response.result.hits]
        else:
            (vector,) = embed(self.embedder, [query], "PineconeRM")
            with _sdk_errors("query", where):
                response = self.index.query(
                    top_k=k, vector=vector, namespace=self.namespace, include_metadata=True
                )
            hits = [(m.id, m.score, dict(m.metadata or {})) for m in response.matches]
        return [self._passage(pid, score, fields) for pid, score, fields in hits]

    def _passage(self, pid: str, score: float | None, fields: dict[str, Any]) -> Passage:
        text = fields.pop(self.text_key, None)
        if not isinstance(text, str):
            raise RetrievalError(
                f"Pinecone record {pid!r} has no text under {self.text_key!r}; pass text_key= "
                "the metadata key (or field) that holds the passage text."
            )
        return Passage(
            id=str(pid), text=text, score=None if score is None else float(score), metadata=fields
        )


@contextlib.contextmanager
def _sdk_errors(what: str, where: str) -> Iterator[None]:
    """Turns the SDK's errors into ``RetrievalError`` (connection, timeout, API errors)."""
    try:
        yield
    except Exception as e:
        errors = require_engine("pinecone.errors", "pinecone")
        if isinstance(e, errors.PineconeValueError | errors.PineconeTypeError):
            raise  # a bad argument: the SDK's own message says which
        if isinstance(e, errors.PineconeError):
            status = getattr(e, "status_code", None)
            retryable = isinstance(
                e,
                errors.PineconeConnectionError
                | errors.PineconeTimeoutError
                | errors.RateLimitError
                | errors.ServiceError,
            )
            raise RetrievalError(
                f"Pinecone {what} on {where!r} failed ({type(e).__name__}: {redact_text(str(e))}).",
                status=status if isinstance(status, int) else None,
                retryable=retryable,
            ) from None
        raise
