"""``ColBERTv2``: the client of a ColBERTv2 search server, with DSPy's API.

The protocol is the one DSPy's ``dspy.ColBERTv2`` speaks: ``GET {url}?query=...&k=...`` (or,
with ``post_requests=True``, ``POST {url}`` with ``{"query": ..., "k": ...}``), answered by
``{"topk": [{"text", "pid", "rank", "score", "prob"}, ...]}`` best first, or by
``{"error": true, "message": ...}``. Requests go through dspex's own HTTP/1.1 client, the LM's
(one keep-alive connection pool per event loop), with a timeout; every failure is a
:class:`~dspex.errors.RetrievalError` that says what happened and whether a retry may help.

Where DSPy's client differs it is a DSPy bug: its POST path drops ``long_text``, which
``dspy.Retrieve`` then fails to read; here both paths return it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from dspex._jsonable import dumps, loads
from dspex._redact import is_secret_key, redact_text, register_secret
from dspex.errors import ConfigurationError, RetrievalError, UserError
from dspex.primitives import Prediction
from dspex.retrievers._base import Passage, Retriever

__all__ = ["ColBERTv2", "ColBERTv2Passage"]

_JSON = {"Content-Type": "application/json; charset=utf-8"}


class ColBERTv2Passage(dict[str, Any]):
    """One passage as DSPy's ``ColBERTv2`` returns it: a dict whose keys are also attributes
    (``psg.long_text``, ``psg["pid"]``), with the server's fields plus ``long_text``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this passage has no {name!r} (it has {sorted(self)})") from None


def _register_url_secrets(url: str) -> None:
    """A basic-auth password and credential-named query values (``?api_key=...``) in ``url``
    are secrets: redacted wherever text is logged, traced or raised."""
    parts = urlsplit(url)
    register_secret(parts.password)
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if is_secret_key(key):
            register_secret(value)


def _http_url(url: str) -> bool:
    """``url`` is an http(s) URL with a host and a valid port: what the client can send to."""
    from dspex.lm._http import endpoint

    try:
        endpoint(url)
    except ConfigurationError:
        return False
    return True


def _safe_url(url: str) -> str:
    """``url`` without a ``user:password@`` part or secret query values, for messages and
    reprs."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit(parts._replace(netloc=netloc))
    return redact_text(url)


class ColBERTv2(Retriever):
    """Search a ColBERTv2 server, as ``dspy.ColBERTv2`` does.

    Args:
        url: the search endpoint, e.g. ``http://20.102.90.50:2017/wiki17_abstracts`` or
            ``http://127.0.0.1:8893/api/search``.
        port: appended as ``{url}:{port}`` when given (DSPy's convention).
        post_requests: POST a JSON body instead of GET with a query string.
        timeout: seconds to wait for an answer (DSPy's is 10).
        k: passages per call when the call does not say (DSPy's default is 10).

    Calling it returns DSPy's shape: a list of dict passages with ``long_text`` (``text``,
    ``pid``, ``rank``, ``score``, ``prob`` as the server sent them), or with
    ``simplify=True`` the texts. :meth:`search` returns typed
    :class:`~dspex.retrievers.Passage` values (``id`` = the pid), and ``dspex.Retrieve``
    takes it as its ``rm``.

    Example:
        >>> import dspex
        >>> colbert = dspex.ColBERTv2(url="http://127.0.0.1:8893/api/search")
        >>> colbert("Who wrote Hamlet?", k=3, simplify=True)  # doctest: +SKIP
        ['Hamlet | Hamlet is a tragedy written by William Shakespeare ...', ...]
    """

    def __init__(
        self,
        url: str = "http://0.0.0.0",
        port: str | int | None = None,
        post_requests: bool = False,
        *,
        timeout: float = 10.0,
        k: int = 10,
    ) -> None:
        super().__init__(k=k)
        full = f"{url}:{port}" if port and isinstance(url, str) else url
        if not isinstance(full, str) or not _http_url(full):
            raise UserError(
                f"ColBERTv2(url={_safe_url(str(url))!r}): pass the server's http:// or https:// "
                "URL with a host, e.g. 'http://127.0.0.1:8893/api/search'."
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise UserError(f"ColBERTv2(timeout={timeout!r}): pass a positive number of seconds.")
        self.url = full
        _register_url_secrets(self.url)
        self.post_requests = bool(post_requests)
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"ColBERTv2(url={_safe_url(self.url)!r}, post_requests={self.post_requests})"

    # DSPy's call: a list of dict passages (or texts), not a Prediction.
    def __call__(  # type: ignore[override]
        self, query: str, k: int | None = None, simplify: bool = False
    ) -> list[str] | list[ColBERTv2Passage]:
        """The top ``k`` passages for ``query`` (default ``self.k``): DSPy's dict passages,
        or their texts when ``simplify``."""
        return _dspy_shape(self.search(query, k), simplify)

    async def acall(  # type: ignore[override]
        self, query: str, k: int | None = None, simplify: bool = False
    ) -> list[str] | list[ColBERTv2Passage]:
        """Async ``__call__``."""
        return _dspy_shape(await self.asearch(query, k), simplify)

    def forward(self, query: str, k: int | None = None) -> Prediction:
        """``Prediction(passages=[texts], indices=[pids], scores=[...])``, as dspex's other
        retrievers return."""
        return self._prediction(self.search(query, k))

    async def _asearch(self, query: str, k: int) -> list[Passage]:
        rows = await self._request(query, k)
        return [_passage(row, rank) for rank, row in enumerate(rows[:k], 1)]

    async def _request(self, query: str, k: int) -> list[Mapping[str, Any]]:
        from dspex.lm._openai import TRANSPORT_ERRORS, get, post

        where = _safe_url(self.url)
        try:
            if self.post_requests:
                body = dumps({"query": query, "k": k})
                resp = await post(self.url, _JSON, body, self.timeout)
            else:
                resp = await get(self.url, {"query": query, "k": str(k)}, {}, self.timeout)
        except TimeoutError:
            raise RetrievalError(
                f"ColBERTv2 server {where} gave no answer within {self.timeout:g}s. Check that "
                "it is up, or raise ColBERTv2(timeout=...).",
                retryable=True,
            ) from None
        except TRANSPORT_ERRORS as e:
            raise RetrievalError(
                f"Could not reach the ColBERTv2 server at {where} "
                f"({type(e).__name__}: {redact_text(str(e))}). "
                "Check the URL and port, and that the server is running.",
                retryable=True,
            ) from None
        return _decode(resp.status, resp.body, where)


def _decode(status: int, raw: bytes, where: str) -> list[Mapping[str, Any]]:
    """The answer's ``topk`` rows, or a ``RetrievalError`` naming what came back instead."""
    try:
        payload = loads(raw)
    except ValueError:
        payload = None
    if isinstance(payload, Mapping) and payload.get("error"):
        # What the server sent back may echo the request (its URL, a token in it).
        message = redact_text(str(payload.get("message", "Unknown error")))
        raise RetrievalError(
            f"ColBERTv2 server {where} returned an error (HTTP {status}): {message}",
            status=status,
            retryable=status >= 500,
        )
    if status >= 300:
        raise RetrievalError(
            f"ColBERTv2 server {where} answered HTTP {status}: {_shown(raw)}",
            status=status,
            retryable=status >= 500 or status == 429,
        )
    if payload is None:
        raise RetrievalError(
            f"ColBERTv2 server {where} answered something that is not JSON: {_shown(raw)}. "
            "Is the URL the server's search endpoint?",
            status=status,
        )
    rows = payload.get("topk") if isinstance(payload, Mapping) else None
    if not isinstance(rows, list) or not all(
        isinstance(r, Mapping) and isinstance(r.get("text"), str) for r in rows
    ):
        raise RetrievalError(
            f"ColBERTv2 server {where} answered without a 'topk' list of passages with "
            f'"text": {redact_text(repr(str(payload)[:200]))}',
            status=status,
        )
    return rows


def _shown(raw: bytes) -> str:
    """The start of a server's answer for an error message, redacted."""
    return redact_text(repr(raw[:200]))


def _passage(row: Mapping[str, Any], rank: int) -> Passage:
    score = row.get("score")
    pid = row.get("pid", row.get("rank", rank))
    return Passage(
        id=str(pid),
        text=row["text"],
        score=float(score) if isinstance(score, int | float) else None,
        metadata={key: value for key, value in row.items() if key != "text"},
    )


def _dspy_shape(passages: list[Passage], simplify: bool) -> list[str] | list[ColBERTv2Passage]:
    if simplify:
        return [p.text for p in passages]
    return [ColBERTv2Passage({**p.metadata, "text": p.text, "long_text": p.text}) for p in passages]
