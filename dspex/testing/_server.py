"""A loopback OpenAI-compatible server in front of a ``SimulatedLM`` or ``DummyLM`` core.

Run it (the command line lives in ``dspex.testing.server``)::

    python -m dspex.testing.server --port 0 --task arithmetic --latency 0.05 \\
        [--seed 0] [--faults "429=0.1,retry_after=1"] [--dummy-file answers.json]

It prints ``listening http://127.0.0.1:PORT/v1`` once ready and serves
``POST /v1/chat/completions``, ``POST /v1/embeddings`` (deterministic hashed embeddings,
:func:`dspex.testing.hash_embed`), ``GET /v1/models``, ``GET /health`` and ``GET /stats``
(``{"requests": N, ...}``, so another process can count LM calls). It binds 127.0.0.1 only.
A request with ``stream: true`` is answered as OpenAI streams: server-sent
``chat.completion.chunk`` events, one per word of the answer (``--stream-interval`` seconds
apart), the usage chunk when ``stream_options.include_usage``, then ``data: [DONE]``.

Why raw ``asyncio.Protocol``: the throughput benchmark drives 64 keep-alive connections on a
2-core machine that also runs the client, so the server must cost well under a millisecond
of CPU per request. A minimal HTTP/1.1 parser (Content-Length bodies, keep-alive, in-order
responses) and timers instead of tasks for the latency keep it at tens of microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from dspex._jsonable import dumps, loads
from dspex._serving import (
    chat_completion,
    chat_completion_chunks,
    error_body,
    model_list,
    set_nodelay,
    split_text,
    sse_event,
)
from dspex.errors import DspexError, UserError
from dspex.lm._types import LMRequest
from dspex.testing._core import Faults, Responder
from dspex.testing._embedding import embedding_response

__all__ = ["Server", "build_responder", "main", "start"]

_MAX_BODY = 64 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def _response(status: int, body: bytes, extra: bytes = b"", close: bool = False) -> bytes:
    conn = b"close" if close else b"keep-alive"
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: %s\r\n%s\r\n"
        % (status, _REASONS.get(status, "Error").encode(), len(body), conn, extra)
    )
    return head + body


def _error(status: int, message: str, kind: str, extra: bytes = b"") -> bytes:
    return _response(status, dumps(error_body(message, kind)), extra)


class Server:
    """The HTTP front of a responder; one instance serves every connection.

    Args:
        responder: a ``Simulator`` or ``Script`` (see :func:`build_responder`).
        latency: seconds before each answer; defaults to the responder's own.
        stream_interval: seconds between the events of a streamed answer (0: all at once).
    """

    def __init__(
        self, responder: Responder, *, latency: float | None = None, stream_interval: float = 0.0
    ) -> None:
        self.responder = responder
        self.latency = responder.latency if latency is None else latency
        self.stream_interval = stream_interval
        # Streamed answers sent in full, and those whose client left before the end.
        self.streams_completed = 0
        self.streams_cancelled = 0
        self.embedding_requests = 0
        self.started = time.time()
        self._connections: set[_HTTPProtocol] = set()

    def stats(self) -> dict[str, Any]:
        counters = getattr(self.responder, "counters", None)
        return {
            "requests": self.responder.request_count,
            "prompt_tokens": getattr(counters, "prompt_tokens", 0),
            "completion_tokens": getattr(counters, "completion_tokens", 0),
            "uptime_s": round(time.time() - self.started, 3),
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "embedding_requests": self.embedding_requests,
        }

    def protocol(self) -> _HTTPProtocol:
        return _HTTPProtocol(self)

    def close_connections(self) -> None:
        """Close every open connection (call on the server's loop)."""
        for conn in list(self._connections):
            conn.close()

    def handle(self, method: bytes, path: bytes, body: bytes) -> tuple[_Answer | None, float]:
        """The response bytes for a request (``None``: never answer) and the delay before it."""
        path = path.split(b"?", 1)[0].rstrip(b"/")
        if path in (b"/v1/chat/completions", b"/chat/completions"):
            if method != b"POST":
                return _error(405, "use POST", "invalid_request_error"), 0.0
            return self._chat(body)
        if path in (b"/v1/embeddings", b"/embeddings") and method == b"POST":
            return self._embeddings(body)
        if method != b"GET":
            return _error(405, "use GET", "invalid_request_error"), 0.0
        if path == b"/health":
            return _response(200, b'{"status":"ok"}'), 0.0
        if path == b"/stats":
            return _response(200, dumps(self.stats())), 0.0
        if path in (b"/v1/models", b"/models"):
            return _response(200, dumps(model_list("dspex-sim"))), 0.0
        return _error(404, f"no route {path.decode(errors='replace')}", "not_found"), 0.0

    def _chat(self, body: bytes) -> tuple[_Answer | None, float]:
        try:
            payload = loads(body)
            messages = payload.pop("messages")
            if not isinstance(messages, list):
                raise TypeError("messages must be a list")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return _error(400, f"invalid request body: {e}", "invalid_request_error"), 0.0
        model = str(payload.pop("model", "dspex-sim"))
        stream = payload.pop("stream", None) is True
        options = payload.pop("stream_options", None)
        request = LMRequest(model=model, messages=tuple(messages), kwargs=payload)
        try:
            reply = self.responder.reply(request)
        except DspexError as e:  # e.g. a DummyLM script that ran out: not retryable
            return _error(400, str(e), type(e).__name__), 0.0
        if reply.fault == "hang":
            return None, 0.0
        if reply.fault == "rate_limit":
            after = f"{reply.retry_after or 0:g}"
            extra = f"Retry-After: {after}\r\nretry-after-ms: {float(after) * 1000:g}\r\n"
            return _error(429, "simulated rate limit", "rate_limit_error", extra.encode()), 0.0
        if reply.fault == "server_error":
            return _error(500, "simulated server error", "server_error"), 0.0
        if stream:
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return _stream_answer(model, reply, usage), self.latency
        completion = chat_completion(
            model,
            reply.texts,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            finish_reasons=reply.finish_reasons,
            completion_id=f"chatcmpl-sim{id(reply):x}",
            tool_calls=[[c.to_openai() for c in calls] for calls in reply.tool_calls],
        )
        return _response(200, dumps(completion)), self.latency

    def _embeddings(self, body: bytes) -> tuple[_Answer | None, float]:
        """Deterministic hashed embeddings (:func:`dspex.testing.hash_embed`)."""
        try:
            payload = loads(body)
            dim = payload.get("dimensions")
            if dim is not None and (not isinstance(dim, int) or dim < 1):
                raise ValueError("dimensions must be a positive int")
            answer = embedding_response(str(payload.get("model", "hash")), payload["input"], dim)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return _error(400, f"invalid request body: {e}", "invalid_request_error"), 0.0
        self.embedding_requests += 1
        return _response(200, dumps(answer)), 0.0


class _Stream:
    """A streamed answer: the response head, then each piece as an HTTP chunk."""

    __slots__ = ("pieces",)

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces


_Answer = bytes | _Stream


def _stream_answer(model: str, reply: Any, usage: bool) -> _Stream:
    """The SSE events of a reply's first text, one per word, as OpenAI streams them."""
    text = reply.texts[0] if reply.texts else ""
    reasons = list(reply.finish_reasons or ())
    chunks = chat_completion_chunks(
        model,
        split_text(text),
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        finish_reason=reasons[0] if reasons else "stop",
        include_usage=usage,
        completion_id=f"chatcmpl-sim{id(reply):x}",
        tool_calls=[c.to_openai() for c in reply.tool_calls[0]] if reply.tool_calls else (),
        more_choices=[
            (t, reasons[i] if i < len(reasons) else None)
            for i, t in enumerate(reply.texts[1:], start=1)
        ],
    )
    events = [sse_event(c) for c in chunks]
    events.append(sse_event("[DONE]"))
    return _Stream(events)


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _HTTPProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1: Content-Length bodies, keep-alive, responses in request order."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        # One slot per request in arrival order; a response waits until earlier ones are sent.
        self._slots: deque[list[_Answer | None]] = deque()
        self._timers: set[asyncio.TimerHandle] = set()
        self._close_after = False
        # The streamed answer being written: later answers wait until it ends.
        self._streaming: _Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server._connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_nodelay(sock)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._transport = None
        self._server._connections.discard(self)
        if self._streaming is not None:  # the client left in the middle of a stream
            self._streaming = None
            self._server.streams_cancelled += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while self._transport is not None and not self._close_after:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end])
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._fail(_error(400, "bad request line", "invalid_request_error"))
                return
            length, close, chunked = self._headers(lines[1:], parts[2])
            if chunked or length > _MAX_BODY:
                code = 411 if chunked else 413
                self._fail(_error(code, "send a Content-Length body", "invalid_request_error"))
                return
            if len(self._buf) < end + 4 + length:
                return
            body = bytes(self._buf[end + 4 : end + 4 + length])
            del self._buf[: end + 4 + length]
            self._close_after = close
            self._dispatch(parts[0], parts[1], body)

    @staticmethod
    def _headers(lines: list[bytes], version: bytes) -> tuple[int, bool, bool]:
        length, close, chunked = 0, version == b"HTTP/1.0", False
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip() or 0)
            elif name == b"connection":
                v = value.strip().lower()
                close = v == b"close" or (close and v != b"keep-alive")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        return length, close, chunked

    def _dispatch(self, method: bytes, path: bytes, body: bytes) -> None:
        try:
            data, delay = self._server.handle(method, path, body)
        except Exception as e:  # never let one bad request kill the connection loop
            data, delay = _error(500, f"{type(e).__name__}: {e}", "server_error"), 0.0
        slot: list[_Answer | None] = [None]
        self._slots.append(slot)
        if data is None:  # a simulated hang: this slot is never filled
            return
        if self._close_after and isinstance(data, bytes):
            data = data.replace(b"Connection: keep-alive", b"Connection: close", 1)
        if delay > 0:
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = None

            def _fire() -> None:
                if timer is not None:
                    self._timers.discard(timer)
                self._fill(slot, data)

            timer = loop.call_later(delay, _fire)
            self._timers.add(timer)
        else:
            self._fill(slot, data)

    def _fill(self, slot: list[_Answer | None], data: _Answer) -> None:
        slot[0] = data
        self._flush()

    def _flush(self) -> None:
        """Write the answers that are ready, in request order."""
        transport = self._transport
        while (
            transport is not None
            and self._streaming is None
            and self._slots
            and self._slots[0][0] is not None
        ):
            answer = self._slots.popleft()[0]
            if isinstance(answer, _Stream):
                self._start_stream(transport, answer)
            else:
                transport.write(answer or b"")
        if transport is not None and self._close_after and not self._slots and not self._streaming:
            transport.close()

    def _start_stream(self, transport: asyncio.Transport, stream: _Stream) -> None:
        conn = b"close" if self._close_after else b"keep-alive"
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: %s\r\n\r\n" % conn
        )
        self._streaming = stream
        interval = self._server.stream_interval
        if interval <= 0:
            transport.write(b"".join(_http_chunk(p) for p in stream.pieces))
            self._end_stream(transport)
            return
        self._stream_next(stream, 0, interval)

    def _stream_next(self, stream: _Stream, index: int, interval: float) -> None:
        transport = self._transport
        if transport is None or self._streaming is not stream:
            return  # the connection went away meanwhile
        transport.write(_http_chunk(stream.pieces[index]))
        if index + 1 == len(stream.pieces):
            self._end_stream(transport)
            return
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def _fire() -> None:
            if timer is not None:
                self._timers.discard(timer)
            self._stream_next(stream, index + 1, interval)

        timer = loop.call_later(interval, _fire)
        self._timers.add(timer)

    def _end_stream(self, transport: asyncio.Transport) -> None:
        transport.write(_http_chunk(b""))
        self._streaming = None
        self._server.streams_completed += 1
        self._flush()

    def _fail(self, data: bytes) -> None:
        # A request we cannot frame: answer it and drop the connection (HTTP allows it).
        self._close_after = True
        if self._transport is not None:
            self._transport.write(data)
            self._transport.close()


def build_responder(
    *,
    task: str = "arithmetic",
    seed: int = 0,
    latency: float = 0.0,
    faults: Faults | None = None,
    dummy_file: str | Path | None = None,
) -> Responder:
    """A ``Script`` from a JSON answers file, or else a ``Simulator`` of a bundled task."""
    from dspex.datasets import load_task
    from dspex.testing._script import Script
    from dspex.testing._sim import Simulator

    if dummy_file is not None:
        path = Path(dummy_file)
        if not path.is_file():
            raise UserError(f"--dummy-file: no such file {str(path)!r}.")
        script = Script(json.loads(path.read_text(encoding="utf-8")))
        script.latency = latency
        return script
    return Simulator(load_task(task), seed=seed, faults=faults, latency=latency)


async def start(server: Server, port: int = 0) -> tuple[asyncio.base_events.Server, int]:
    """Listen on 127.0.0.1:``port`` (0 picks a free port); returns the server and its port."""
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        server.protocol, host="127.0.0.1", port=port, reuse_address=True, backlog=1024
    )
    bound = listener.sockets[0].getsockname()[1]
    return listener, int(bound)


async def _serve_forever(server: Server, port: int, announce: Callable[[str], None]) -> None:
    listener, bound = await start(server, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    announce(f"listening http://127.0.0.1:{bound}/v1")
    async with listener:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dspex.testing.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--task", default="arithmetic", help="bundled task to simulate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--faults", default="", help='e.g. "429=0.1,500=0.02,retry_after=1"')
    parser.add_argument("--dummy-file", default=None, help="JSON list/mapping of DummyLM answers")
    parser.add_argument(
        "--stream-interval", type=float, default=0.0, help="seconds between streamed events"
    )
    args = parser.parse_args(argv)
    try:
        responder = build_responder(
            task=args.task,
            seed=args.seed,
            latency=args.latency,
            faults=Faults.from_string(args.faults) if args.faults else None,
            dummy_file=args.dummy_file,
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def announce(line: str) -> None:
        print(line, flush=True)

    server = Server(responder, stream_interval=args.stream_interval)
    asyncio.run(_serve_forever(server, args.port, announce))
    return 0
