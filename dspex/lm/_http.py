"""A small HTTP/1.1 keep-alive client on ``asyncio.Protocol``: the LM hot path's transport.

A general client (aiohttp) spends most of its per-request time on what an LM call never needs:
URL objects, header multidicts, payload registries, tracing signals, timeout context managers.
This one does only what ``POST /chat/completions`` (and a retriever's ``GET``) needs, so one
call costs one write, one future, one timer handle and a parse of a short response head:

* the request is bytes built ahead (``request_head``) plus the body;
* connections are pooled per event loop and ``(scheme, host, port)``, HTTP and HTTPS (one
  ``ssl`` context per CA setting, made once);
* the response is read by ``Content-Length``, ``Transfer-Encoding: chunked`` or to EOF;
* a deadline is one ``loop.call_at`` handle: the whole exchange for ``request``, the wait for
  the head and for each next piece for ``stream``;
* a pooled connection the server had closed (nothing came back on it) is retried once on a
  fresh connection; a connection whose exchange did not finish (a timeout, a cancelled caller,
  a stream left early) is closed, never reused, so the server sees the client go.

No proxies (``trust_env`` was off before too), no cookies, no redirects, no compression asked
for (a ``gzip``/``deflate`` body is still decoded).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from dspex.errors import ConfigurationError

__all__ = [
    "Endpoint",
    "HTTPProtocolError",
    "Headers",
    "Pool",
    "Response",
    "StreamResponse",
    "endpoint",
    "get_request",
    "request_head",
]

# Enough sockets for concurrency 256+ against several servers at once; more calls wait.
_LIMIT = 512
# A pooled connection idle for longer is closed rather than reused (servers drop them).
_IDLE_S = 60.0
_MAX_HEAD = 64 * 1024
_USER_AGENT = b"dspex"

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _TO_EOF, _DONE, _IDLE = range(9)


class HTTPProtocolError(Exception):
    """The connection broke or the server's answer was not valid HTTP/1.1."""


class _Stale(Exception):
    """A reused connection closed before any byte of the answer came back."""


class Headers(dict[str, str]):
    """Response headers, looked up case-insensitively (names are stored lower-case)."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go: parsed once per URL."""

    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    target: bytes
    host_header: str
    basic_auth: str | None


@dataclass(frozen=True, slots=True)
class Response:
    """A whole answer."""

    status: int
    headers: Headers
    body: bytes


def endpoint(url: str) -> Endpoint:
    """Parse ``url`` (``http://`` or ``https://``) once."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if scheme not in ("http", "https") or not host:
        raise ConfigurationError(
            f"api_base must be an http:// or https:// URL with a host (got a URL with scheme "
            f"{scheme or 'none'!r}). Example: api_base='http://127.0.0.1:8000/v1'."
        )
    tls = scheme == "https"
    default = 443 if tls else 80
    port = port or default
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    auth = None
    if parts.username is not None:
        pair = f"{parts.username}:{parts.password or ''}".encode()
        auth = "Basic " + base64.b64encode(pair).decode("ascii")
    return Endpoint(
        (scheme, host, port),
        host,
        port,
        tls,
        target.encode("utf-8"),
        shown if port == default else f"{shown}:{port}",
        auth,
    )


def request_head(ep: Endpoint, headers: Mapping[str, str]) -> bytes:
    """The bytes of a ``POST`` head up to (not including) the ``Content-Length`` value.

    ``headers`` override the defaults by name, case-insensitively."""
    lines = _head_lines(b"POST", ep.target, ep, headers)
    lines.append(b"Content-Length: ")
    return b"\r\n".join(lines)


def get_request(ep: Endpoint, query: Mapping[str, str], headers: Mapping[str, str]) -> bytes:
    r"""A whole ``GET`` request: ``query`` added to the URL's own query string, form-encoded.

    Example:
        >>> get_request(endpoint("http://h/s?key=1"), {"q": "a b"}, {}).split(b"\r\n")[0]
        b'GET /s?key=1&q=a+b HTTP/1.1'
    """
    target = ep.target
    if query:
        target += (b"&" if b"?" in target else b"?") + urlencode(query).encode("ascii")
    return b"\r\n".join([*_head_lines(b"GET", target, ep, headers), b"", b""])


def _head_lines(
    method: bytes, target: bytes, ep: Endpoint, headers: Mapping[str, str]
) -> list[bytes]:
    fields = {"host": ("Host", ep.host_header), "user-agent": ("User-Agent", "dspex")}
    fields["accept"] = ("Accept", "*/*")
    if ep.basic_auth is not None:
        fields["authorization"] = ("Authorization", ep.basic_auth)
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            # Never echo the value: it may be a credential.
            raise ConfigurationError(
                f"The HTTP header {name.splitlines()[0][:40]!r} has a line break, NUL or (in "
                "its name) a colon: remove it from extra_headers / api_key."
            )
        if name.lower() not in ("content-length", "transfer-encoding"):
            fields[name.lower()] = (name, value)
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines.extend(f"{name}: {value}".encode() for name, value in fields.values())
    return lines


_ssl_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def _ssl_context() -> ssl.SSLContext:
    # The default context reads ``SSL_CERT_FILE``/``SSL_CERT_DIR`` once, when made: one per
    # setting, so a process (or a test) that changes them gets a context that sees it.
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _ssl_contexts.get(key)
    if context is None:
        context = _ssl_contexts[key] = ssl.create_default_context()
    return context


class _Conn(asyncio.Protocol):
    """One keep-alive connection, reading one answer at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._state = _IDLE
        self._buf = b""
        self._remaining = 0
        self._parts: list[bytes] = []
        self._status = 0
        self._headers = Headers()
        self._keep_alive = True
        self._got = False
        self._stream = False
        self._waiter: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self._last = 0.0
        # Streaming: pieces read and not yet taken, and the reader waiting for one.
        self._pieces: deque[bytes] = deque()
        self._reader: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
        if self._state == _TO_EOF:
            self._finish()
        elif self._state != _IDLE and self._state != _DONE:
            why = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
            self._fail(
                _Stale()
                if not self._got and self.idle_since
                else HTTPProtocolError(f"connection lost before the answer ended ({why})")
            )

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    def data_received(self, data: bytes) -> None:
        if self._state == _IDLE or self._state == _DONE:
            self.close()  # bytes nobody asked for: the connection's framing is unknown
            return
        self._got = True
        if self._stream:
            self._last = self.pool.loop.time()
        if self._buf:
            data, self._buf = self._buf + data, b""
        try:
            self._feed(data)
        except HTTPProtocolError as exc:
            self._fail(exc)
            self.close()

    # -- parsing ----------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        while data:
            state = self._state
            if state == _LENGTH:
                take = data[: self._remaining]
                self._remaining -= len(take)
                self._piece(take)
                data = data[len(take) :]
                if not self._remaining:
                    self._finish()
            elif state == _HEAD:
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    if len(data) > _MAX_HEAD:
                        raise HTTPProtocolError("the response head is too long")
                    self._buf = data
                    return
                self._head(data[:end])
                data = data[end + 4 :]
            elif state == _CHUNK_DATA:
                take = data[: self._remaining]
                self._remaining -= len(take)
                self._piece(take)
                data = data[len(take) :]
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state in (_CHUNK_SIZE, _CHUNK_END, _TRAILER):
                end = data.find(b"\r\n")
                if end < 0:
                    self._buf = data
                    return
                line, data = data[:end], data[end + 2 :]
                self._line(state, line)
            elif state == _TO_EOF:
                self._piece(data)
                return
            else:  # _DONE: more than the answer; the framing cannot be trusted
                self.reusable = False
                return

    def _line(self, state: int, line: bytes) -> None:
        if state == _CHUNK_END:
            if line:
                raise HTTPProtocolError("a chunk is longer than its size")
            self._state = _CHUNK_SIZE
        elif state == _CHUNK_SIZE:
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise HTTPProtocolError("bad chunk size in a chunked response") from None
            if size:
                self._remaining, self._state = size, _CHUNK_DATA
            else:
                self._state = _TRAILER
        elif not line:  # the blank line after the (usually absent) trailers
            self._finish()

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(None, 2)
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            raise HTTPProtocolError("the server's answer is not HTTP/1.x") from None
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HTTPProtocolError("a malformed header line in the answer")
            key, value = name.strip().lower(), value.strip()
            fields[key] = f"{fields[key]}, {value}" if key in fields else value
        self._status, self._headers = status, Headers(fields)
        connection = fields.get("connection", "").lower()
        self._keep_alive = (
            "close" not in connection
            if status_line[0] == "HTTP/1.1"
            else "keep-alive" in connection
        )
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif status == 204 or status == 304:
            self._finish()
        elif "content-length" in fields:
            try:
                self._remaining = int(fields["content-length"])
            except ValueError:
                raise HTTPProtocolError("a bad Content-Length in the answer") from None
            self._state = _LENGTH
            if not self._remaining:
                self._finish()
        else:
            self._keep_alive = False
            self._state = _TO_EOF
        if self._stream and self._state != _DONE:
            self._resolve(None)  # the head is in: the reader takes the body piece by piece

    def _piece(self, data: bytes) -> None:
        if data:
            if self._stream:
                self._pieces.append(data)
                self._wake()
            else:
                self._parts.append(data)

    def _finish(self) -> None:
        self._state = _DONE
        self.reusable = self._keep_alive and not self.closed
        if self._stream:
            self._resolve(None)
            self._wake()
            return
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if dict.__contains__(self._headers, "content-encoding"):
            try:
                body = decode_body(self._headers, body)
            except HTTPProtocolError as exc:
                self._fail(exc)
                return
        self._resolve(Response(self._status, self._headers, body))

    def _resolve(self, value: Any) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.set_result(None)

    # -- timers -----------------------------------------------------------------------
    def _on_deadline(self) -> None:
        self._timer = None
        if self._stream:
            # Streams time out on silence, not on length: wait on while pieces keep coming.
            quiet_until = self._last + self._timeout
            if quiet_until > self.pool.loop.time():
                self._timer = self.pool.loop.call_at(quiet_until, self._on_deadline)
                return
        self._fail(TimeoutError())
        self.close()

    # -- used by Pool -----------------------------------------------------------------
    def begin(
        self, data: bytes, deadline: float, timeout: float, stream: bool
    ) -> asyncio.Future[Any]:
        """Send a request; the future gets the answer (the head only, for a stream). The
        deadline is ``deadline`` for a whole answer, ``timeout`` of silence for a stream."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            if self.idle_since:
                raise _Stale()
            raise HTTPProtocolError("the server closed the connection before the request")
        loop = self.pool.loop
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiter, self._stream, self._timeout = waiter, stream, timeout
        self._state, self._parts, self._got, self._error = _HEAD, [], False, None
        self.reusable = False
        now = self._last = loop.time()
        self._timer = loop.call_at(now + timeout if stream else deadline, self._on_deadline)
        transport.write(data)
        return waiter

    def end(self) -> None:
        """The exchange is over (answered, failed or abandoned)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if self._state != _DONE:
            self.close()  # unfinished: the rest of the answer would poison the next one
        self._state = _IDLE

    async def next_piece(self) -> bytes:
        """The next piece of a streamed body; ``b""`` at its end."""
        while True:
            if self._pieces:
                return self._pieces.popleft()
            if self._error is not None:
                raise self._error
            if self._state == _DONE:
                return b""
            self._reader = self.pool.loop.create_future()
            await self._reader

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
        if self.transport is not None:
            self.transport.abort()


class StreamResponse:
    """An answer whose body is read as it arrives (``async for line in resp.lines()``)."""

    def __init__(self, conn: _Conn, status: int, headers: Headers) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while piece := await self._conn.next_piece():
            parts.append(piece)
        return b"".join(parts)

    async def lines(self) -> AsyncIterator[bytes]:
        """The body's lines (without their ``\\n``), as they arrive."""
        rest = b""
        while piece := await self._conn.next_piece():
            rest += piece
            *done, rest = rest.split(b"\n")
            for line in done:
                yield line
        if rest:
            yield rest

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the body was read to
        the end, and is closed otherwise."""
        conn = self._conn
        conn.end()
        conn.pool._give_back(conn)


class Pool:
    """The keep-alive connections of one event loop, by ``(scheme, host, port)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open: set[_Conn] = set()
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    async def request(self, ep: Endpoint, data: bytes, timeout: float) -> Response:
        """Send ``data`` (a whole request) and read the whole answer, all (the connect and
        any resend included) within ``timeout``."""
        response: Response = await self._send(ep, data, timeout, False)
        return response

    async def stream(self, ep: Endpoint, data: bytes, timeout: float) -> StreamResponse:
        """Send ``data`` and return once the answer's head is in; ``timeout`` bounds the
        connect, the wait for the head and each wait for the next piece. The caller must
        ``release()`` the answer."""
        conn: _Conn = await self._send(ep, data, timeout, True)
        return StreamResponse(conn, conn._status, conn._headers)

    async def _send(self, ep: Endpoint, data: bytes, timeout: float, stream: bool) -> Any:
        loop = self.loop
        deadline = loop.time() + timeout
        conn = self._take(ep.key)
        if conn is None:
            conn = await self._connect(ep, deadline)
        while True:
            try:
                result = await conn.begin(data, deadline, timeout, stream)
            except _Stale:  # only a reused connection raises it: resend once, on a new one
                conn.end()
                if stream:
                    deadline = loop.time() + timeout
                conn = await self._connect(ep, deadline)
                continue
            except BaseException:
                conn.end()  # closes it: failed or cancelled mid-answer
                self._give_back(conn)
                raise
            if stream:
                return conn
            conn.end()
            self._give_back(conn)
            return result

    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                if self.loop.time() - conn.idle_since < _IDLE_S:
                    return conn
                conn.close()
        return None

    def _give_back(self, conn: _Conn) -> None:
        if conn.reusable and not conn.closed and not self.closed:
            conn.idle_since = self.loop.time()
            self._idle.setdefault(conn.key, []).append(conn)
        elif not conn.closed:
            conn.close()
        if self._slot_waiters:
            self._wake_one()

    def _forget(self, conn: _Conn) -> None:
        self._open.discard(conn)
        if self._slot_waiters:
            self._wake_one()

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, ep: Endpoint, deadline: float) -> _Conn:
        loop = self.loop
        if self.closed:
            raise HTTPProtocolError("the connection pool was closed")
        async with asyncio.timeout_at(deadline):
            while len(self._open) >= _LIMIT:
                conn = self._take(ep.key)
                if conn is not None:
                    return conn
                if self._idle_any():
                    continue
                waiter: asyncio.Future[None] = loop.create_future()
                self._slot_waiters.append(waiter)
                await waiter
            conn = _Conn(self, ep.key)
            self._open.add(conn)
            try:
                await loop.create_connection(
                    lambda: conn,
                    ep.host,
                    ep.port,
                    ssl=_ssl_context() if ep.tls else None,
                    server_hostname=ep.host if ep.tls else None,
                )
            except BaseException:
                conn.closed = True
                self._forget(conn)
                raise
        if self.closed:  # the loop's pool closed while this connected
            conn.close()
            raise HTTPProtocolError("the connection pool was closed")
        return conn

    def _idle_any(self) -> bool:
        """Close one idle connection to another host, to make room; whether one was."""
        for idle in self._idle.values():
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    conn.close()
                    return True
        return False

    def close(self) -> None:
        """Close every connection (on the pool's loop)."""
        self.closed = True
        self._idle.clear()
        for conn in list(self._open):
            conn.close()

    def abandon(self) -> None:
        """Let go of the sockets of a pool whose loop is closed (nothing can run on it)."""
        self.closed = True
        self._idle.clear()
        for conn in list(self._open):
            # A transport closes through its loop, which is gone: close the socket of a plain
            # TCP one here, and mark it closed so it does not warn when collected.
            sock = getattr(conn.transport, "_sock", None)
            if sock is not None:
                sock.close()
                conn.transport._sock = None  # type: ignore[union-attr]
        self._open.clear()


def decode_body(headers: Headers, body: bytes) -> bytes:
    """``body`` with a ``gzip``/``deflate`` content coding undone (we never ask for one)."""
    coding = headers.get("content-encoding", "identity").lower()
    if coding in ("identity", ""):
        return body
    if coding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(body, 47)  # 47: a gzip or zlib header, detected
        except zlib.error:
            raise HTTPProtocolError(f"the {coding} body does not decompress") from None
    raise HTTPProtocolError(f"the answer has a content coding we cannot read ({coding})")
