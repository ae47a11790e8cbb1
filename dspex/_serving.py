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

The simulator server keeps its own asyncio HTTP parser for throughput (see
``dspex.testing._server``) and uses only the bodies and :func:`set_nodelay`.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dspex._jsonable import json_default_or_str

__all__ = [
    "JSONRoute",
    "chat_completion",
    "error_body",
    "make_json_server",
    "model_list",
    "serve_until_interrupted",
    "server_url",
    "set_nodelay",
]

JSONRoute = Callable[[Any], tuple[int, dict[str, Any]]]
"""A route: the parsed JSON body (``None`` for a GET) to ``(status, JSON body)``."""


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
    ``"rate_limit_error"`` or ``"server_error"``.
    """
    return {"error": {"message": message, "type": kind}}


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
            data = json.dumps(body, default=json_default_or_str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: a loopback server's callers log what they need

    return ThreadingHTTPServer((host, port), Handler)


def _dispatch(
    table: Mapping[tuple[str, str], JSONRoute], method: str, target: str, raw: bytes
) -> tuple[int, dict[str, Any]]:
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
