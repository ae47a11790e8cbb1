"""An OpenAI-compatible loopback server for a local (optionally finetuned) model.

    python -m dspex.finetune.serve --model ./tiny --adapter runs/ft/adapter --port 8000

``POST /v1/chat/completions`` (messages, ``temperature``, ``max_tokens``, ``n``) answers with
the model through ``dspex.LM("local/<model>", adapter=...)`` — concurrent requests are
batched — so any OpenAI client can use a finetuned model: ``dspex.LM("openai/<name>",
api_base="http://127.0.0.1:8000/v1")``, the ``openai`` package, curl. ``GET /v1/models`` lists
it. It listens on 127.0.0.1 unless ``--host`` says otherwise, prints its URL on the first line
of stdout, and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["main", "make_server"]

_PARAMS = ("temperature", "max_tokens", "n")


def make_server(
    model: str, adapter: str | None = None, host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """The server (not started): ``server.serve_forever()`` runs it."""
    from dspex.lm import LM

    extra: dict[str, Any] = {"adapter": adapter} if adapter else {}
    lm = LM(f"local/{model}", cache=False, **extra)
    name = model.rstrip("/").rsplit("/", 1)[-1]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                messages = body["messages"]
                params = {k: body[k] for k in _PARAMS if body.get(k) is not None}
            except (ValueError, KeyError, TypeError) as e:
                self._reply(400, {"error": {"message": f"bad request: {e}"}})
                return
            try:
                response = lm.forward(messages, **params)
            except Exception as e:
                self._reply(500, {"error": {"message": f"{type(e).__name__}: {e}"}})
                return
            usage = response.usage
            self._reply(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": name,
                    "choices": [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                        for i, text in enumerate(response.outputs)
                    ],
                    "usage": {
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.total_tokens,
                    },
                },
            )

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model directory or hub id")
    p.add_argument("--adapter", default=None, help="a LoRA adapter directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: pick a free port")
    args = p.parse_args(argv)
    server = make_server(args.model, args.adapter, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"http://{host!s}:{port}/v1", flush=True)  # host is a str for AF_INET
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
