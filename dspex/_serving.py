"""What every loopback server of dspex shares: OpenAI bodies and a small threaded JSON server.

The bodies are the OpenAI chat-completion wire format that ``dspex.lm._openai`` parses:
:func:`chat_completion`, :func:`error_body` and :func:`model_list`. The simulator server
(``dspex.testing``), the finetuned-model server (``dspex.finetune.serve``), the examples and
the tests build their answers here, so a client sees one format whichever server it reaches.

:func:`make_json_server` is the plumbing of the thread-per-connection servers: a
``ThreadingHTTPServer`` on 127.0.0.1 with ``TCP_NODELAY``, JSON request bodies, JSON answers
and errors in the OpenAI shape. Routes are plain functions from the parsed body to
``(status, body)``::

    server = make_json_server({("GET", "/v1/models"): lambda _: (200, model_list("m"))})
    print(server_url(server))  # http://127.0.0.1:PORT
    serve_until_interrupted(server)

A route may answer ``(200, EventStream(...))`` instead of a JSON body: the events go out as
server-sent events (``Content-Type: text/event-stream``, chunked), as OpenAI streams;
:func:`chat_completion_chunks` builds OpenAI's ``chat.completion.chunk`` sequence for a text.

The simulator server keeps its own asyncio HTTP parser for throughput (see
``dspex.testing._server``) and uses only the bodies and :func:`set_nodelay`.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dspex._jsonable import json_default_or_str
from dspex._redact import redact_text

__all__ = [
    "EventStream",
    "JSONRoute",
    "chat_completion",
    "chat_completion_chunks",
    "error_body",
    "make_json_server",
    "model_list",
    "serve_until_interrupted",
    "server_url",
    "set_nodelay",
    "split_text",
    "sse_event",
    "wants_usage",
]


@dataclass(frozen=True)
class EventStream:
    """A streamed answer: each JSON object of ``events`` is sent as one ``data:`` event as
    soon as the iterator yields it, then ``data: [DONE]`` (when ``done``).

    If the client goes away, the iterator is closed (``GeneratorExit`` in a generator), so
    whatever produces the events can stop.
    """

    events: Iterable[Mapping[str, Any]]
    done: bool = True


JSONRoute = Callable[[Any], tuple[int, "dict[str, Any] | EventStream"]]
"""A route: the parsed JSON body (``None`` for a GET) to ``(status, JSON body)`` or
``(200, EventStream(...))``."""

_PIECE = re.compile(r"\s*\S+\s*?(?=\s|$)|\s+$")


def split_text(text: str) -> list[str]:
    """``text`` in word-sized pieces that join back to it, as a model streams tokens.

    Example:
        >>> split_text("The answer is 4.")
        ['The', ' answer', ' is', ' 4.']
    """
    pieces = _PIECE.findall(text)
    return pieces if "".join(pieces) == text else [text]


def sse_event(data: Mapping[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <JSON>`` (or the literal string) and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, default=json_default_or_str)
    return f"data: {text}\n\n".encode()


def chat_completion_chunks(
    model: str,
    pieces: Iterable[str],
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    finish_reason: str | None = "stop",
    include_usage: bool = False,
    completion_id: str | None = None,
    created: int | None = None,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    more_choices: Sequence[tuple[str, str | None]] = (),
) -> Iterator[dict[str, Any]]:
    """OpenAI's ``chat.completion.chunk`` sequence for one choice, as ``stream=true`` gets it.

    A first chunk with ``delta.role``, one ``delta.content`` chunk per piece (pulled from
    ``pieces`` lazily, so a generator of tokens streams as it generates), one
    ``delta.tool_calls`` chunk per OpenAI-format function call in ``tool_calls`` (the finish
    reason is then ``"tool_calls"``), a chunk with the ``finish_reason``, and with
    ``include_usage`` (``stream_options.include_usage``) a last chunk with no choices and the
    usage. ``more_choices`` (``n > 1``): the ``(text, finish_reason)`` of choices 1, 2, ...,
    each sent whole after the first choice's pieces. The caller sends ``data: [DONE]`` after
    them.

    Example:
        >>> chunks = list(chat_completion_chunks("m", ["4"], include_usage=True))
        >>> [c["choices"][0]["delta"] if c["choices"] else c["usage"] for c in chunks]
        [{'role': 'assistant', 'content': ''}, {'content': '4'}, {}, \
{'prompt_tokens': 0, 'completion_tokens': 0, 'total_tokens': 0}]
    """
    head = {
        "id": completion_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()) if created is None else created,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in pieces:
        if piece:
            yield chunk({"content": piece})
    for index, call in enumerate(tool_calls):
        yield chunk({"tool_calls": [{"index": index, **call}]})
    if tool_calls and finish_reason in (None, "stop"):
        finish_reason = "tool_calls"
    yield chunk({}, finish_reason or "stop")
    for index, (text, reason) in enumerate(more_choices, start=1):
        yield chunk({"role": "assistant", "content": text}, None, index)
        yield chunk({}, reason or "stop", index)
    if include_usage:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        yield {**head, "choices": [], "usage": usage}


def wants_usage(body: Mapping[str, Any]) -> bool:
    """Whether a streaming request asked for the usage chunk (``stream_options``)."""
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


def chat_completion(
    model: str,
    texts: Sequence[str],
    *,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reasons: Sequence[str | None] = (),
    completion_id: str | None = None,
    created: int | None = None,
    tool_calls: Sequence[Sequence[Mapping[str, Any]] | None] = (),
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` body with one assistant choice per text.

    Args:
        model: the model name to report.
        texts: the choices' contents, in order.
        prompt_tokens / completion_tokens: the usage; ``total_tokens`` is their sum.
        finish_reasons: one per text; a missing or ``None`` one is ``"stop"``.
        completion_id: the ``id``; a fresh ``chatcmpl-<uuid>`` by default.
        created: the Unix time to report; now by default.
        tool_calls: per text, OpenAI-format function calls (``message.tool_calls``); a
            choice with calls and no text has ``content: null``, as OpenAI sends it.

    Example:
        >>> body = chat_completion("m", ["4"], prompt_tokens=3, completion_tokens=1)
        >>> body["choices"][0]["message"], body["usage"]["total_tokens"]
        ({'role': 'assistant', 'content': '4'}, 4)
    """
    reasons = list(finish_reasons)
    choices: list[dict[str, Any]] = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": (reasons[i] if i < len(reasons) else None) or "stop",
        }
        for i, text in enumerate(texts)
    ]
    for choice, calls in zip(choices, tool_calls, strict=False):
        if calls:
            message = choice["message"]
            message["tool_calls"] = [dict(c) for c in calls]
            if not message["content"]:
                message["content"] = None
            if choice["finish_reason"] == "stop":
                choice["finish_reason"] = "tool_calls"
    return {
        "id": completion_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, kind: str) -> dict[str, Any]:
    """An OpenAI error body: ``{"error": {"message": ..., "type": kind}}``.

    ``kind`` is OpenAI's error type, e.g. ``"invalid_request_error"``, ``"not_found"``,
    ``"rate_limit_error"`` or ``"server_error"``. The message is redacted: it often carries
    an exception's text, and it goes to whoever sent the request.
    """
    return {"error": {"message": redact_text(message), "type": kind}}


def model_list(*model_ids: str) -> dict[str, Any]:
    """The body of ``GET /v1/models`` listing ``model_ids``."""
    return {"object": "list", "data": [{"id": m, "object": "model"} for m in model_ids]}


def set_nodelay(sock: socket.socket) -> None:
    """Turn off Nagle on a server socket.

    Without it, Nagle plus the client's delayed ACK add ~40 ms to every keep-alive response.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_json_server(
    routes: Mapping[tuple[str, str], JSONRoute], *, host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """A thread-per-connection HTTP/1.1 server answering JSON (not started).

    Args:
        routes: ``(method, path)`` to a route; a path matches with or without a trailing
            slash and query string. An unknown path is a 404, a known path with another
            method a 405, a body that is not JSON a 400, and a route that raises a 500 with
            the exception's type and message; the server keeps serving.
        host: the interface to bind; loopback unless the caller says otherwise.
        port: 0 picks a free port (see :func:`server_url`).

    Returns:
        The server; ``serve_forever()`` (or :func:`serve_until_interrupted`) runs it.
    """
    table = {(method.upper(), path.rstrip("/")): route for (method, path), route in routes.items()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            set_nodelay(self.connection)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            # Read the whole body first, so an answered error leaves the keep-alive stream
            # at the next request.
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = _dispatch(table, method, self.path, raw)
            if isinstance(body, EventStream):
                self._stream(body)
                return
            data = json.dumps(body, default=json_default_or_str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, stream: EventStream) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = iter(stream.events)
            try:
                for event in events:
                    self._chunk(sse_event(event))
                if stream.done:
                    self._chunk(sse_event("[DONE]"))
                self._chunk(b"")
            except OSError:  # the client went away: stop producing, drop the connection
                self.close_connection = True
            except Exception as e:  # a failure mid-stream is reported as OpenAI does
                self._chunk(sse_event(error_body(f"{type(e).__name__}: {e}", "server_error")))
                self._chunk(b"")
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: a loopback server's callers log what they need

    return ThreadingHTTPServer((host, port), Handler)


def _dispatch(
    table: Mapping[tuple[str, str], JSONRoute], method: str, target: str, raw: bytes
) -> tuple[int, dict[str, Any] | EventStream]:
    path = target.split("?", 1)[0].rstrip("/")
    route = table.get((method, path))
    if route is None:
        allowed = sorted(m for m, p in table if p == path)
        if allowed:
            return 405, error_body(f"use {' or '.join(allowed)}", "invalid_request_error")
        return 404, error_body(f"no route {path or '/'}", "not_found")
    try:
        payload = json.loads(raw or b"{}") if method != "GET" else None
    except ValueError as e:
        return 400, error_body(f"invalid request body: {e}", "invalid_request_error")
    try:
        return route(payload)
    except Exception as e:  # report it and keep serving the next request
        return 500, error_body(f"{type(e).__name__}: {e}", "server_error")


def server_url(server: ThreadingHTTPServer) -> str:
    """``http://HOST:PORT`` of a server made by :func:`make_json_server`."""
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"  # host is a str for AF_INET


def serve_until_interrupted(server: ThreadingHTTPServer) -> None:
    """Serve until Ctrl-C (SIGINT), then close the listening socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
