"""The retriever interface every dspex retriever shares.

A retriever implements one method, ``_asearch(query, k)`` (or a sync ``_search``), returning
:class:`Passage` values best first. The base class does the rest, once for all of them:
validates the query and ``k`` before any work, opens a ``retrieve`` span and announces it to
the callbacks (``on_retrieve_start`` / ``on_retrieve_end``, hence a trace row of kind
``retrieve`` under ``dspex.traces.record``), and returns DSPy's shape: ``__call__`` gives
``Prediction(passages=[texts], indices=[ids], scores=[floats])`` as
``dspy.retrievers.Embeddings`` does, ``search`` gives the typed passages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspex.callbacks import active, observed
from dspex.errors import UserError
from dspex.primitives import Prediction

__all__ = [
    "CallableRetriever",
    "Passage",
    "Retriever",
    "check_k",
    "passages_of",
    "retriever_fingerprint",
]


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved passage.

    Attributes:
        id: the passage's id in its corpus or store (a corpus position as a string when the
            corpus had no ids).
        text: the passage text.
        score: the retriever's relevance score, higher is better (``None`` when the backend
            gives none).
        metadata: anything else the backend returned (title, source, ...), JSON-safe.

    Example:
        >>> p = Passage(id="3", text="Paris is in France.", score=0.9)
        >>> p.long_text  # DSPy's ColBERTv2 passages call the text long_text
        'Paris is in France.'
    """

    id: str
    text: str
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def long_text(self) -> str:
        """The text, under the name DSPy's ``Retrieve`` reads (``psg.long_text``)."""
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "score": self.score, **self.metadata}


def check_k(k: Any, what: str = "k") -> int:
    """``k`` as a positive int, or a :class:`UserError` saying what to pass."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"{what}={k!r}: pass a positive int, the number of passages to return.")
    return k


def _check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise UserError(
            f"A retriever takes one query string, got {type(query).__name__}. For several "
            "queries call it once per query (or use asyncio.gather over acall)."
        )
    if not query.strip():
        raise UserError("The retrieval query is empty; pass the text to search for.")
    return query


class Retriever:
    """Base class of dspex's retrievers.

    Subclasses implement ``async def _asearch(self, query, k)`` or ``def _search(self, query,
    k)``, returning at most ``k`` :class:`Passage` values best first. Calls are validated,
    traced and shaped here.

    Args:
        k: how many passages a call returns when it does not say.

    Example:
        >>> class Firsts(Retriever):
        ...     def __init__(self, texts, k=2):
        ...         super().__init__(k=k)
        ...         self.texts = texts
        ...     def _search(self, query, k):
        ...         return [Passage(str(i), t, 1.0) for i, t in enumerate(self.texts[:k])]
        >>> Firsts(["a", "b", "c"])("anything").passages
        ['a', 'b']
    """

    def __init__(self, k: int = 5) -> None:
        self.k = check_k(k)

    @property
    def name(self) -> str:
        """What traces call this retriever (``module_path`` of its rows)."""
        return type(self).__name__

    # -- what subclasses implement ---------------------------------------------------------
    def _search(self, query: str, k: int) -> list[Passage]:
        raise NotImplementedError(f"{type(self).__name__} must define _search or _asearch.")

    async def _asearch(self, query: str, k: int) -> list[Passage]:
        """Async search; the default runs the sync ``_search`` in a worker thread."""
        if type(self)._search is Retriever._search:
            raise NotImplementedError(f"{type(self).__name__} must define _search or _asearch.")
        return await asyncio.to_thread(self._search, query, k)

    def _prediction(self, passages: Sequence[Passage]) -> Prediction:
        """DSPy's result shape; a subclass may give other ``indices`` (corpus positions)."""
        return Prediction(
            passages=[p.text for p in passages],
            indices=[p.id for p in passages],
            scores=[p.score for p in passages],
        )

    # -- the public calls ------------------------------------------------------------------
    def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The top ``k`` passages for ``query`` (default ``self.k``), best first."""
        query, k = _check_query(query), self._k(k)
        if type(self)._search is not Retriever._search:
            return self._traced_sync(query, k)
        from dspex._runtime import run_sync

        return run_sync(self.asearch(query, k))

    async def asearch(self, query: str, k: int | None = None) -> list[Passage]:
        """Async :meth:`search`."""
        query, k = _check_query(query), self._k(k)
        callbacks = active()
        if not callbacks:
            return self._checked(await self._asearch(query, k), k)
        with observed(callbacks, "retrieve", self.name, (self, query, k), (self,)) as call:
            call.result = passages = self._checked(await self._asearch(query, k), k)
        return passages

    def _traced_sync(self, query: str, k: int) -> list[Passage]:
        callbacks = active()
        if not callbacks:
            return self._checked(self._search(query, k), k)
        with observed(callbacks, "retrieve", self.name, (self, query, k), (self,)) as call:
            call.result = passages = self._checked(self._search(query, k), k)
        return passages

    def __call__(self, query: str, k: int | None = None) -> Prediction:
        """``Prediction(passages=[texts], indices=[ids], scores=[floats])``, best first."""
        return self._prediction(self.search(query, k))

    def forward(self, query: str, k: int | None = None) -> Prediction:
        """The same as calling the retriever (DSPy's ``Embeddings.forward``)."""
        return self(query, k)

    async def acall(self, query: str, k: int | None = None) -> Prediction:
        """Async ``__call__``."""
        return self._prediction(await self.asearch(query, k))

    def _k(self, k: int | None) -> int:
        return self.k if k is None else check_k(k)

    def _checked(self, passages: Sequence[Passage], k: int) -> list[Passage]:
        # A backend that ignores k (or returns something else) must not leak through.
        out = list(passages)
        bad = next((p for p in out if not isinstance(p, Passage)), None)
        if bad is not None:
            raise TypeError(
                f"{type(self).__name__}._asearch returned a {type(bad).__name__}; it must "
                "return dspex.retrievers.Passage values."
            )
        return out[:k]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"

    # -- identity --------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A stable hash of what this retriever returns: its class, settings and index.

        A program's fingerprint (what an optimization run's Prefect cache keys and MLflow
        run resume use) folds in the fingerprints of the retrievers it holds, so a run over
        a rebuilt index is a new run. The default covers the class, ``k``, public settings
        (numbers, strings, flags, small lists and dicts of them: ``normalize``, BM25's
        ``params``, a vector database's collection or index name...), the embedder's model
        name, callables' qualified names, nested retrievers' fingerprints and, for a
        retriever that holds its corpus (``corpus``/``ids`` lists, as ``Embeddings`` and
        ``BM25`` do), a sha256 over the passages and ids. The corpus hash is computed once
        and again only when the corpus grows (``add()``). A client over an external engine
        is described by its settings, not its remote content: re-indexing a collection
        under the same name keeps the fingerprint. Subclasses may extend
        :meth:`_identity`. Credentials (``api_key``, a URL's password or query) are left
        out.

        Example:
            >>> from dspex.retrievers import BM25
            >>> a = BM25(["Paris is in France.", "Rome is in Italy."])
            >>> a.fingerprint() == BM25(["Paris is in France.", "Rome is in Italy."]).fingerprint()
            True
            >>> a.fingerprint() == BM25(["Paris is in France.", "Oslo is in Norway."]).fingerprint()
            False
        """
        body = json.dumps(self._identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def _identity(self) -> dict[str, Any]:
        """The JSON-able description :meth:`fingerprint` hashes (see there)."""
        cls = type(self)
        out: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
        for name, value in sorted(vars(self).items()):
            if name.startswith("_") or name in _NOT_IDENTITY or _secret_name(name):
                continue
            described = _describe(value)
            if described is not _SKIP:
                out[name] = described
        corpus = getattr(self, "corpus", None)
        if isinstance(corpus, list):
            out["corpus"] = self._corpus_digest(corpus, getattr(self, "ids", None))
        return out

    def _corpus_digest(self, corpus: list[Any], ids: Any) -> str:
        # Cached on the retriever: hashing a large corpus per task call would cost more
        # than the search. The corpus and ids only grow in place (add()), so their lengths
        # (and the lists' identity, should they be replaced) say when to hash again.
        ids_list = ids if isinstance(ids, list) else None
        stamp = (id(corpus), len(corpus), id(ids_list), len(ids_list or ()))
        cached = self.__dict__.get("_dspex_corpus_digest")
        if cached is not None and cached[0] == stamp:
            return str(cached[1])
        h = hashlib.sha256()
        for text in corpus:
            h.update(str(text).encode())
            h.update(b"\x00")
        h.update(b"\x01ids")
        for pid in ids_list or ():
            h.update(str(pid).encode())
            h.update(b"\x00")
        digest = h.hexdigest()
        self.__dict__["_dspex_corpus_digest"] = (stamp, digest)
        return digest

    def __deepcopy__(self, memo: dict[int, Any]) -> Retriever:
        # A retriever is a resource, like an LM client: a program's copies (an optimizer
        # makes one per candidate and per Prefect task) share its index, never copy it.
        return self


# Attributes that do not change what a retriever returns (or are hashed separately).
_NOT_IDENTITY = frozenset({"callbacks", "corpus", "ids", "corpus_embeddings", "timeout", "client"})
_SECRET_PARTS = ("key", "token", "secret", "password", "auth", "credential")
_SKIP = object()


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_PARTS)


def _public_url(text: str) -> str:
    """A URL without its user info, query or fragment (where credentials go)."""
    from urllib.parse import urlsplit

    if "://" not in text:
        return text
    parts = urlsplit(text)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _describe(value: Any, depth: int = 0) -> Any:
    """``value`` as identity JSON, or ``_SKIP`` for what says nothing stable (clients)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _public_url(value)
    if isinstance(value, Retriever):
        return value.fingerprint()
    if depth < 2 and isinstance(value, list | tuple):
        items = [_describe(v, depth + 1) for v in value]
        return _SKIP if any(i is _SKIP for i in items) else items
    if depth < 2 and isinstance(value, Mapping):
        pairs = {
            str(k): _describe(v, depth + 1) for k, v in value.items() if not _secret_name(str(k))
        }
        return _SKIP if any(v is _SKIP for v in pairs.values()) else pairs
    model = getattr(value, "name", None) if hasattr(value, "model") else None
    if isinstance(model, str):  # an Embedder: its model's name, never its endpoint or key
        return {"embedder": model}
    if callable(value):
        return _qualified_name(value)
    return _SKIP


def _qualified_name(fn: Any) -> str:
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"


def retriever_fingerprint(rm: Any) -> str:
    """The fingerprint of any retriever ``Retrieve`` accepts: a :class:`Retriever`'s own,
    or for a DSPy-style callable, its qualified name's.

    Example:
        >>> def search(query, k):
        ...     return ["a"][:k]
        >>> retriever_fingerprint(search) == retriever_fingerprint(search)
        True
    """
    if isinstance(rm, Retriever):
        return rm.fingerprint()
    return CallableRetriever(rm).fingerprint()


def _passage_of(item: Any, position: int) -> Passage:
    """One passage from what DSPy-style retrievers return: a string, a ``dotdict``/dict with
    ``long_text`` or ``text``, or an object with those attributes."""
    if isinstance(item, Passage):
        return item
    if isinstance(item, str):
        return Passage(id=str(position), text=item)

    def get(key: str) -> Any:
        return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)

    text = get("long_text")
    text = get("text") if text is None else text
    if not isinstance(text, str):
        raise TypeError(
            f"The retriever returned a {type(item).__name__} without long_text or text; return "
            "strings, dicts with 'text', or dspex.retrievers.Passage values."
        )
    pid, score = get("pid"), get("score")
    pid = get("id") if pid is None else pid
    return Passage(
        id=str(position if pid is None else pid),
        text=text,
        score=float(score) if isinstance(score, int | float) else None,
    )


def passages_of(result: Any) -> list[Passage]:
    """Passages from any DSPy-style retriever result (a ``Prediction`` with ``passages``, a
    list of strings or of ``dotdict`` passages, or one passage)."""
    if isinstance(result, Prediction) or hasattr(result, "passages"):
        texts = result.passages
        ids = getattr(result, "indices", None) or range(len(texts))
        scores = getattr(result, "scores", None) or [None] * len(texts)
        return [
            Passage(id=str(i), text=str(t), score=None if s is None else float(s))
            for i, t, s in zip(ids, texts, scores, strict=False)
        ]
    if isinstance(result, str | Mapping) or not isinstance(result, Sequence):
        result = [result]
    return [_passage_of(item, i) for i, item in enumerate(result)]


class CallableRetriever(Retriever):
    """A DSPy-style retriever (any ``rm(query, k=k)`` callable, e.g. a DSPy ``ColBERTv2``) as
    a :class:`Retriever`, so that its calls are validated and traced like dspex's own.

    Example:
        >>> rm = CallableRetriever(lambda query, k: ["one", "two", "three"][:k], k=2)
        >>> rm("anything").passages
        ['one', 'two']
    """

    def __init__(self, fn: Any, k: int = 5, **kwargs: Any) -> None:
        if not callable(fn):
            raise UserError(f"A retriever must be callable as rm(query, k=k); got {fn!r}.")
        super().__init__(k=k)
        self.fn = fn
        self.kwargs = kwargs

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", None) or type(self.fn).__name__

    def _identity(self) -> dict[str, Any]:
        # The function's qualified name (and, for a DSPy retriever object, its settings).
        out = super()._identity()
        out["fn"] = _qualified_name(self.fn)
        if not callable(getattr(self.fn, "__code__", None)) and hasattr(self.fn, "__dict__"):
            out["fn_settings"] = {
                k: d
                for k, v in sorted(vars(self.fn).items())
                if not k.startswith("_")
                and not _secret_name(k)
                and (d := _describe(v)) is not _SKIP
            }
        return out

    def _search(self, query: str, k: int) -> list[Passage]:
        return passages_of(self.fn(query, k=k, **self.kwargs))
