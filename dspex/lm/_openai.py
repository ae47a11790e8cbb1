"""The lean transport: OpenAI-compatible ``/chat/completions`` over dspex's HTTP/1.1 pool.

This is the hot path for ``openai/...`` models (real OpenAI, vLLM, SGLang, the dspex
simulator), so it does as little per call as it can: the request head is bytes built once
per transport, the body is orjson bytes, the answer is read by ``dspex.lm._http`` (a small
keep-alive client on ``asyncio.Protocol``). Everything that only matters on failure (error
bodies, ``Retry-After``) is parsed only on failure.

Connections are pooled per event loop: a connection belongs to the loop it was made on. An
``LM`` call runs on the loop that awaits it (sync calls on dspex's shared loop), so each loop
that makes calls gets one pool, shared by every LM, transport and embedder on it. A pool is
closed when its loop shuts down its async generators (``asyncio.run``, ``asyncio.Runner`` and
pytest do), or at interpreter exit; a loop closed without either has its pool dropped on the
next new pool. The ColBERTv2 client's requests (:func:`get`, :func:`post`) share it.
"""

from __future__ import annotations

import asyncio
import atexit
import email.utils
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from dspex._jsonable import dumps, loads
from dspex._redact import redact_text, register_secret
from dspex.errors import LMError, LMServerError, LMTimeoutError, lm_error_from_status
from dspex.lm._http import (
    Endpoint,
    HTTPProtocolError,
    Pool,
    Response,
    StreamResponse,
    endpoint,
    get_request,
    request_head,
)
from dspex.lm._stream import StreamAssembler
from dspex.lm._types import LMRequest, RawCompletion, tool_calls_of

__all__ = ["OPENAI_API_BASE", "OpenAITransport", "aclose_sessions", "get", "post"]

OPENAI_API_BASE = "https://api.openai.com/v1"
# What a failed exchange raises besides ``TimeoutError`` (itself an ``OSError``: catch first).
TRANSPORT_ERRORS = (OSError, HTTPProtocolError)


class _LoopClients:
    """What one event loop's calls share: the HTTP pool."""

    __slots__ = ("pool",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = Pool(loop)

    async def aclose(self) -> None:
        self.pool.close()
        await asyncio.sleep(0)  # let the transports' connection_lost run: sockets close there

    def abandon(self) -> None:
        self.pool.abandon()


# One record per loop, and the async generator that closes it when the loop shuts down.
# Calls run on many loops in many threads: the lock guards both tables.
_lock = threading.Lock()
_clients: dict[asyncio.AbstractEventLoop, _LoopClients] = {}
_guards: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
# This thread's most recently used (loop, record): one identity check on the common path.
_local = threading.local()
_endpoints: dict[str, Endpoint] = {}
_exit_hook = False


async def _close_at_loop_shutdown(
    loop: asyncio.AbstractEventLoop, clients: _LoopClients
) -> AsyncGenerator[None, None]:
    # The loop closes still-suspended async generators in ``shutdown_asyncgens`` (run by
    # ``asyncio.run`` and ``asyncio.Runner``): the only hook a library gets at loop end.
    try:
        yield
    finally:
        with _lock:
            if _clients.get(loop) is clients:
                del _clients[loop]
                _guards.pop(loop, None)
        await clients.aclose()


async def _loop_clients() -> _LoopClients:
    loop = asyncio.get_running_loop()
    local = _local
    clients: _LoopClients | None = getattr(local, "clients", None)
    if clients is None or local.loop is not loop or clients.pool.closed:
        clients = _clients.get(loop)
        if clients is None or clients.pool.closed:
            clients = await _open_clients(loop)
        local.loop, local.clients = loop, clients
    return clients


async def _pool() -> Pool:
    return (await _loop_clients()).pool


def _current_pool() -> Pool | None:
    """The pool this thread used last, if it is the running loop's (no coroutine needed)."""
    local = _local
    clients: _LoopClients | None = getattr(local, "clients", None)
    if clients is None or clients.pool.closed or local.loop is not asyncio.get_running_loop():
        return None
    return clients.pool


async def _open_clients(loop: asyncio.AbstractEventLoop) -> _LoopClients:
    """A new record for ``loop`` (the running one), closed when the loop shuts down."""
    clients = _LoopClients(loop)
    guard = _close_at_loop_shutdown(loop, clients)
    with _lock:
        _drop_closed_loops()
        _clients[loop] = clients
        _guards[loop] = guard
    _register_exit_hook()
    # Runs to its ``yield`` without suspending: no other task of this loop gets in meanwhile.
    await guard.asend(None)
    return clients


def _drop_closed_loops() -> None:
    """Forget the records of loops closed without shutting down their async generators (a
    loop run by hand, then closed): nothing can await their close any more. Under ``_lock``."""
    for loop in [loop for loop in _clients if loop.is_closed()]:
        _clients.pop(loop).abandon()
        _guards.pop(loop, None)


async def aclose_sessions() -> None:
    """Close the connection pool of the running loop (a new one opens on the next call)."""
    loop = asyncio.get_running_loop()
    with _lock:
        guard = _guards.pop(loop, None)
    if getattr(_local, "loop", None) is loop:
        _local.loop = _local.clients = None
    if guard is not None:
        await guard.aclose()  # its ``finally`` forgets the record and closes it


async def _shut(guard: AsyncGenerator[None, None]) -> None:
    await guard.aclose()


def _register_exit_hook() -> None:
    # Registered with the first pool, so after dspex._runtime's hook, which stops dspex's
    # loop: atexit runs hooks last-in first-out, so pools close while that loop still runs.
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    """Close every loop's pool that its loop has not closed yet, on that loop."""
    with _lock:
        pairs = [(loop, _clients[loop], _guards.pop(loop, None)) for loop in list(_clients)]
    for loop, clients, guard in pairs:
        if clients.pool.closed or guard is None:
            continue
        try:
            if loop.is_closed():
                clients.abandon()
            elif loop.is_running():  # in another thread (dspex's loop, a user's)
                future = asyncio.run_coroutine_threadsafe(_shut(guard), loop)
                try:
                    future.result(2.0)
                except BaseException:  # exiting anyway: a slow close must not hang exit
                    future.cancel()
                    raise
            else:
                loop.run_until_complete(asyncio.wait_for(_shut(guard), 2.0))
        except Exception:
            clients.abandon()


def _endpoint(url: str) -> Endpoint:
    found = _endpoints.get(url)
    if found is None:
        if len(_endpoints) > 256:
            _endpoints.clear()
        found = _endpoints[url] = endpoint(url)
    return found


def _request_bytes(head: bytes, body: bytes) -> bytes:
    return b"".join((head, str(len(body)).encode("ascii"), b"\r\n\r\n", body))


async def post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> Response:
    """``POST body`` to ``url`` on the running loop's pool; the whole answer, its body decoded.

    Raises ``TimeoutError`` past ``timeout``, else one of ``TRANSPORT_ERRORS`` when the
    connection fails; ``ConfigurationError`` for a URL that is not http(s)."""
    ep = _endpoint(url)
    pool = await _pool()
    return await pool.request(ep, _request_bytes(request_head(ep, headers), body), timeout)


async def get(
    url: str, query: Mapping[str, str], headers: Mapping[str, str], timeout: float
) -> Response:
    """``GET url`` with ``query`` added to its query string, on the running loop's pool; raises
    as :func:`post` does."""
    ep = _endpoint(url)
    pool = await _pool()
    return await pool.request(ep, get_request(ep, query, headers), timeout)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _provider_message(payload: bytes) -> str:
    """The useful part of an error body (OpenAI's ``error.message`` and code), redacted."""
    text = payload[:4000].decode("utf-8", "replace")
    try:
        data = loads(payload)
    except ValueError:
        return redact_text(text)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message") or text
        code = error.get("code") or error.get("type")
        text = f"{message} ({code})" if code else str(message)
    elif isinstance(error, str):
        text = error
    return redact_text(text)


def http_error(status: int, payload: bytes, headers: Mapping[str, str], model: str) -> LMError:
    """The typed error for a non-2xx answer."""
    message = _provider_message(payload)
    retry_after = parse_retry_after(headers)
    if status == 408:
        return LMTimeoutError(
            f"{model}: the provider timed out the request (HTTP 408). Provider said: {message}",
            status=status,
            retry_after=retry_after,
            model=model,
        )
    return lm_error_from_status(status, message, model=model, retry_after=retry_after)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def parse_completion(payload: bytes, model: str) -> RawCompletion:
    """Parse a ``chat.completion`` body; a body that is not one is a server error."""
    try:
        data = loads(payload)
        choices = data["choices"]
        messages = [c.get("message") or {} for c in choices]
        texts = [_text_of(m.get("content")) for m in messages]
        finish = [c.get("finish_reason") for c in choices]
        usage = data.get("usage") or {}
        calls = [tool_calls_of(m) for m in messages]
        return RawCompletion(
            texts,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            finish,
            data.get("model"),
            calls if any(calls) else (),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        shown = redact_text(payload[:300].decode("utf-8", "replace"))
        raise LMServerError(
            f"{model}: the provider sent a response that is not a chat completion: {shown}",
            status=200,
            model=model,
        ) from None


class OpenAITransport:
    """Sends requests to an OpenAI-compatible server (``POST {api_base}/chat/completions``).

    Args:
        api_key: sent as ``Authorization: Bearer``. When omitted and ``api_base`` is OpenAI's,
            ``$OPENAI_API_KEY`` is used; other servers get no Authorization header.
        api_base: the server's base URL, e.g. ``http://127.0.0.1:8000/v1``.

    Example:
        >>> from dspex.lm import LM, OpenAITransport
        >>> t = OpenAITransport(api_base="http://127.0.0.1:8000/v1")
        >>> lm = LM("openai/sim", transport=t)
    """

    name = "openai"
    # Safe to use from any event loop: each loop gets its own connection pool.
    loop_safe = True

    def __init__(self, *, api_key: str | None = None, api_base: str | None = None) -> None:
        base = (api_base or OPENAI_API_BASE).rstrip("/")
        if api_key is None and base == OPENAI_API_BASE:
            api_key = os.environ.get("OPENAI_API_KEY")
        register_secret(api_key)
        self._url_text = base + "/chat/completions"
        self._headers: dict[str, str] = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # Parsed, and the request head built, on the first request (a bad URL fails there).
        self._ep: Endpoint | None = None
        self._head = b""

    def __repr__(self) -> str:
        return f"OpenAITransport(url={redact_text(self._url_text)!r})"

    def _prepare(self, kwargs: Mapping[str, Any]) -> tuple[Endpoint, bytes, Mapping[str, Any]]:
        ep = self._ep
        if ep is None:
            ep = endpoint(self._url_text)
            self._head = request_head(ep, self._headers)
            self._ep = ep
        head = self._head
        if "extra_headers" in kwargs:
            rest = dict(kwargs)
            head = request_head(ep, {**self._headers, **(rest.pop("extra_headers") or {})})
            return ep, head, rest
        return ep, head, kwargs

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        """POST the request; raise a typed ``LMError`` on any failure."""
        pool = _current_pool() or await _pool()
        model = request.model
        ep, head, kwargs = self._prepare(request.kwargs)
        body = dumps(
            {"model": model.removeprefix("openai/"), "messages": request.messages, **kwargs}
        )
        try:
            resp = await pool.request(ep, _request_bytes(head, body), timeout)
        except TimeoutError:
            raise LMTimeoutError(
                f"{model}: no answer within {timeout:g}s. Raise LM(timeout=...) for slow models.",
                model=model,
            ) from None
        except TRANSPORT_ERRORS as exc:
            raise _connection_error(model, "connection to the provider failed", exc) from None
        if resp.status >= 300:
            raise http_error(resp.status, resp.body, resp.headers, model)
        return parse_completion(resp.body, model)

    async def stream(
        self, request: LMRequest, *, timeout: float, on_text: Callable[[str], None]
    ) -> RawCompletion:
        """POST the request with ``stream=true`` and read the server-sent events: each text
        delta of the first choice goes to ``on_text`` as it arrives, the whole completion
        (with the usage the last chunk carries, ``stream_options.include_usage``) is returned.

        ``timeout`` bounds the connect, the wait for the answer and each wait for its next
        piece, not the whole stream. If the caller stops waiting (cancellation), the
        connection is closed, not reused: the server sees the client go and can stop
        generating.
        """
        pool = _current_pool() or await _pool()
        model = request.model
        ep, head, kwargs = self._prepare(request.kwargs)
        kwargs = dict(kwargs)
        options = {**(kwargs.pop("stream_options", None) or {}), "include_usage": True}
        body = dumps(
            {
                "model": model.removeprefix("openai/"),
                "messages": request.messages,
                **kwargs,
                "stream": True,
                "stream_options": options,
            }
        )
        try:
            resp = await pool.stream(ep, _request_bytes(head, body), timeout)
            try:
                if resp.status >= 300:
                    raise http_error(resp.status, await resp.read(), resp.headers, model)
                return await _read_events(resp, model, on_text)
            finally:
                resp.release()  # closes the connection unless the answer was read to its end
        except TimeoutError:
            raise LMTimeoutError(
                f"{model}: the stream stalled for {timeout:g}s. Raise LM(timeout=...) for slow "
                "models.",
                model=model,
            ) from None
        except TRANSPORT_ERRORS as exc:
            raise _connection_error(model, "the stream from the provider broke", exc) from None

    async def aclose(self) -> None:
        """Close the connection pool of the running loop, which this transport shares with
        every other on that loop."""
        await aclose_sessions()


def _connection_error(model: str, what: str, exc: BaseException) -> LMServerError:
    return LMServerError(
        f"{model}: {what} ({type(exc).__name__}: {redact_text(str(exc))}).", model=model
    )


async def _read_events(
    resp: StreamResponse, model: str, on_text: Callable[[str], None]
) -> RawCompletion:
    """Read an OpenAI ``text/event-stream`` to ``data: [DONE]``."""
    assembler = StreamAssembler()
    done = False
    async for raw_line in resp.lines():
        line = raw_line.strip()
        if not line.startswith(b"data:"):
            continue  # blank separators, ``:`` keep-alive comments, ``event:`` lines
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            chunk = loads(data)
        except ValueError:
            raise _bad_stream(model, data) from None
        if not isinstance(chunk, dict):
            raise _bad_stream(model, data)
        if "error" in chunk:  # a provider failing mid-stream says so in an event
            raise LMServerError(f"{model}: {_provider_message(data)}", status=200, model=model)
        text = assembler.add(chunk)
        if text:
            on_text(text)
    if not done and not assembler.finished:
        raise LMServerError(f"{model}: the stream ended before the answer did.", model=model)
    if done:
        await resp.read()  # the end of the body follows [DONE]: read it, keep the connection
    return assembler.result()


def _bad_stream(model: str, data: bytes) -> LMServerError:
    shown = redact_text(data[:300].decode("utf-8", "replace"))
    return LMServerError(
        f"{model}: the provider sent a stream event that is not a chat completion chunk: {shown}",
        status=200,
        model=model,
    )
