"""The lean transport: OpenAI-compatible ``/chat/completions`` over pooled aiohttp.

This is the hot path for ``openai/...`` models (real OpenAI, vLLM, SGLang, the dspex
simulator), so it does as little per call as it can: one pre-parsed URL, cached timeout
objects, orjson bytes in and out, no cookie jar, no logging. Everything that only matters
on failure (error bodies, ``Retry-After``) is parsed only on failure.

Connections are pooled per event loop: an aiohttp session belongs to the loop it was made
on. An ``LM`` call runs on the loop that awaits it (sync calls on dspex's shared loop), so each
loop that makes calls gets one session, shared by every LM and transport on it. A session is
closed when its loop shuts down its async generators (``asyncio.run``, ``asyncio.Runner`` and
pytest do), or at interpreter exit; a loop closed without either has its session dropped on
the next new session.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email.utils
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from dspex._jsonable import dumps, loads
from dspex._redact import redact_text, register_secret
from dspex.errors import LMError, LMServerError, LMTimeoutError, lm_error_from_status
from dspex.lm._stream import StreamAssembler
from dspex.lm._types import LMRequest, RawCompletion, tool_calls_of

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

__all__ = ["OPENAI_API_BASE", "OpenAITransport", "aclose_sessions"]

OPENAI_API_BASE = "https://api.openai.com/v1"
# Enough sockets for concurrency 64+ against several servers at once.
_POOL_LIMIT = 512
_KEEPALIVE_S = 60.0

# One session per loop, and the async generator that closes it when the loop shuts down.
# Calls run on many loops in many threads: the lock guards both tables.
_lock = threading.Lock()
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
_guards: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
# This thread's most recently used (loop, session): one identity check on the common path.
_local = threading.local()
_timeouts: dict[float, aiohttp.ClientTimeout] = {}
_stream_timeouts: dict[float, aiohttp.ClientTimeout] = {}
# aiohttp loads on the first request, not at ``import dspex`` (it costs ~90 ms).
_aio: Any = None
_exit_hook = False


def _load_aiohttp() -> Any:
    global _aio
    if _aio is None:
        import aiohttp

        _aio = aiohttp
    return _aio


async def _close_at_loop_shutdown(
    loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
) -> AsyncGenerator[None, None]:
    # The loop closes still-suspended async generators in ``shutdown_asyncgens`` (run by
    # ``asyncio.run`` and ``asyncio.Runner``): the only hook a library gets at loop end.
    try:
        yield
    finally:
        with _lock:
            if _sessions.get(loop) is session:
                del _sessions[loop]
                _guards.pop(loop, None)
        await session.close()


def _new_session() -> aiohttp.ClientSession:
    aio = _load_aiohttp()
    connector = aio.TCPConnector(
        limit=_POOL_LIMIT, limit_per_host=0, keepalive_timeout=_KEEPALIVE_S, ttl_dns_cache=300
    )
    session: aiohttp.ClientSession = aio.ClientSession(
        connector=connector,
        cookie_jar=aio.DummyCookieJar(),
        raise_for_status=False,
        trust_env=False,
    )
    return session


async def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    local = _local
    session: aiohttp.ClientSession | None = getattr(local, "session", None)
    if session is None or local.loop is not loop or session.closed:
        session = _sessions.get(loop)
        if session is None or session.closed:
            session = await _open_session(loop)
        local.loop, local.session = loop, session
    return session


async def _open_session(loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
    """A new session for ``loop`` (the running one), closed when the loop shuts down."""
    session = _new_session()
    guard = _close_at_loop_shutdown(loop, session)
    with _lock:
        _drop_closed_loops()
        _sessions[loop] = session
        _guards[loop] = guard
    _register_exit_hook()
    # Runs to its ``yield`` without suspending: no other task of this loop gets in meanwhile.
    await guard.asend(None)
    return session


def _drop_closed_loops() -> None:
    """Forget the sessions of loops closed without shutting down their async generators (a
    loop run by hand, then closed): nothing can await their close any more. Under ``_lock``."""
    for loop in [loop for loop in _sessions if loop.is_closed()]:
        _abandon(_sessions.pop(loop))
        _guards.pop(loop, None)


def _abandon(session: aiohttp.ClientSession) -> None:
    """Let go of a session whose loop is closed. Its sockets close when collected; marking
    its connector closed keeps aiohttp from reporting it through that dead loop."""
    connector = session.connector
    session.detach()
    close = getattr(connector, "_close", None)  # aiohttp's: on a closed loop, only marks it
    if close is not None:
        with contextlib.suppress(Exception):
            close()


async def aclose_sessions() -> None:
    """Close the connection pool of the running loop (a new one opens on the next call)."""
    loop = asyncio.get_running_loop()
    with _lock:
        guard = _guards.pop(loop, None)
    if getattr(_local, "loop", None) is loop:
        _local.loop = _local.session = None
    if guard is not None:
        await guard.aclose()  # its ``finally`` forgets the session and closes it


async def _shut(guard: AsyncGenerator[None, None]) -> None:
    await guard.aclose()


def _register_exit_hook() -> None:
    # Registered with the first session, so after dspex._runtime's hook, which stops dspex's
    # loop: atexit runs hooks last-in first-out, so sessions close while that loop still runs.
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    """Close every loop's session that its loop has not closed yet, on that loop."""
    with _lock:
        pairs = [(loop, _sessions[loop], _guards.pop(loop, None)) for loop in list(_sessions)]
    for loop, session, guard in pairs:
        if session.closed or guard is None:
            continue
        try:
            if loop.is_closed():
                _abandon(session)
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
            _abandon(session)


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    found = _timeouts.get(seconds)
    if found is None:
        found = _timeouts[seconds] = _load_aiohttp().ClientTimeout(total=seconds)
    return found


def _stream_timeout(seconds: float) -> aiohttp.ClientTimeout:
    # A stream may run longer than ``timeout`` in all; what must not exceed it is the wait
    # for the connection and for each next piece.
    found = _stream_timeouts.get(seconds)
    if found is None:
        found = _stream_timeouts[seconds] = _load_aiohttp().ClientTimeout(
            total=None, sock_connect=seconds, sock_read=seconds
        )
    return found


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
        self._url: URL | None = None  # parsed once, on the first request
        self._headers: dict[str, str] = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def __repr__(self) -> str:
        return f"OpenAITransport(url={redact_text(self._url_text)!r})"

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        """POST the request; raise a typed ``LMError`` on any failure."""
        session = await _session()
        url = self._url
        if url is None:
            from yarl import URL

            url = self._url = URL(self._url_text)
        model = request.model
        kwargs = request.kwargs
        headers = self._headers
        if "extra_headers" in kwargs:
            kwargs = dict(kwargs)
            headers = {**headers, **kwargs.pop("extra_headers")}
        body = dumps(
            {"model": model.removeprefix("openai/"), "messages": request.messages, **kwargs}
        )
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=_timeout(timeout)
            ) as resp:
                payload = await resp.read()
                status = resp.status
                if status >= 300:
                    raise http_error(status, payload, resp.headers, model)
        except TimeoutError:
            raise LMTimeoutError(
                f"{model}: no answer within {timeout:g}s. Raise LM(timeout=...) for slow models.",
                model=model,
            ) from None
        except _aio.ClientError as exc:
            raise LMServerError(
                f"{model}: connection to the provider failed ({type(exc).__name__}: "
                f"{redact_text(str(exc))}).",
                model=model,
            ) from None
        return parse_completion(payload, model)

    async def stream(
        self, request: LMRequest, *, timeout: float, on_text: Callable[[str], None]
    ) -> RawCompletion:
        """POST the request with ``stream=true`` and read the server-sent events: each text
        delta of the first choice goes to ``on_text`` as it arrives, the whole completion
        (with the usage the last chunk carries, ``stream_options.include_usage``) is returned.

        If the caller stops waiting (cancellation), the connection is closed, not reused: the
        server sees the client go and can stop generating.
        """
        session = await _session()
        model = request.model
        kwargs = dict(request.kwargs)
        headers = {**self._headers, **kwargs.pop("extra_headers", {})}
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
            async with session.post(
                self._url_text, data=body, headers=headers, timeout=_stream_timeout(timeout)
            ) as resp:
                if resp.status >= 300:
                    raise http_error(resp.status, await resp.read(), resp.headers, model)
                try:
                    return await _read_events(resp, model, on_text)
                except BaseException:
                    resp.close()  # drop the connection: the rest of the stream is unread
                    raise
        except TimeoutError:
            raise LMTimeoutError(
                f"{model}: the stream stalled for {timeout:g}s. Raise LM(timeout=...) for slow "
                "models.",
                model=model,
            ) from None
        except _aio.ClientError as exc:
            raise LMServerError(
                f"{model}: the stream from the provider broke ({type(exc).__name__}: "
                f"{redact_text(str(exc))}).",
                model=model,
            ) from None

    async def aclose(self) -> None:
        """Close the connection pool of the running loop, which this transport shares with
        every other on that loop."""
        await aclose_sessions()


async def _read_events(
    resp: aiohttp.ClientResponse, model: str, on_text: Callable[[str], None]
) -> RawCompletion:
    """Read an OpenAI ``text/event-stream`` to ``data: [DONE]``."""
    assembler = StreamAssembler()
    done = False
    async for raw_line in resp.content:
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
    return assembler.result()


def _bad_stream(model: str, data: bytes) -> LMServerError:
    shown = redact_text(data[:300].decode("utf-8", "replace"))
    return LMServerError(
        f"{model}: the provider sent a stream event that is not a chat completion chunk: {shown}",
        status=200,
        model=model,
    )
