"""A small service that answers with the registry's champion and follows promotions.

    MLFLOW_TRACKING_URI=sqlite:///dspex-runs/mlflow.db \\
        python examples/serve_champion.py --model arithmetic-qa --port 8080

* ``POST /predict`` with a JSON object of the program's inputs (``{"question": "..."}``)
  answers with its outputs and the version that answered: ``{"answer": 5, "version": "3"}``.
* ``GET /healthz``: the model, alias and version being served.
* ``POST /reload``: look the alias up again and load the new version if it moved; it also
  happens on its own every ``--poll-s`` seconds (0: only on request). A version that fails
  to load is not swapped in: the current one keeps serving, and the error is reported.

It loads ``models:/NAME@ALIAS`` with ``dspex.mlflow.load_model`` (JSON state and a code
reference, no pickle) and runs the program in-process; the LM's key comes from the
environment. Standard library only, besides dspex: put it behind your own server in
production.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dspex
import dspex.mlflow


class Champion:
    """The program ``models:/NAME@ALIAS`` points at, swapped atomically on reload."""

    def __init__(self, name: str, alias: str) -> None:
        self.name, self.alias = name, alias
        self._lock = threading.Lock()
        self.version: str | None = None
        self.program: dspex.Module | None = None
        self.reload()

    def reload(self) -> dict[str, Any]:
        """Load the alias's version if it is not the one served; returns what happened."""
        found = dspex.mlflow.get_version_by_alias(self.name, self.alias)
        if found is None:
            raise SystemExit(f"models:/{self.name}@{self.alias} does not exist (yet).")
        version = str(found.version)
        if version == self.version:
            return {"version": version, "reloaded": False}
        program = dspex.mlflow.load_model(f"models:/{self.name}/{version}")
        with self._lock:
            self.program, self.version = program, version
        return {"version": version, "reloaded": True}

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            program, version = self.program, self.version
        assert program is not None
        prediction = program(**inputs)
        return {**dict(prediction.items()), "version": version}


def make_handler(champion: Champion) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                name, alias = champion.name, champion.alias
                self._reply(200, {"model": name, "alias": alias, "version": champion.version})
            else:
                self._reply(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            try:
                if self.path == "/reload":
                    self._reply(200, champion.reload())
                elif self.path == "/predict":
                    length = int(self.headers.get("Content-Length", "0"))
                    inputs = json.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(inputs, dict):
                        self._reply(400, {"error": "send a JSON object of the inputs"})
                        return
                    self._reply(200, champion.predict(inputs))
                else:
                    self._reply(404, {"error": f"no route {self.path}"})
            except Exception as e:  # report, keep serving
                self._reply(500, {"error": f"{type(e).__name__}: {e}"})

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def _poll(champion: Champion, every: float) -> None:
    while True:
        time.sleep(every)
        try:
            champion.reload()
        except Exception as e:  # the registry is down, a bad version: keep the current one
            print(f"reload failed, still serving v{champion.version}: {e}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--alias", default="champion")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: pick a free port")
    p.add_argument("--poll-s", type=float, default=60.0, help="alias check period; 0: off")
    args = p.parse_args(argv)
    champion = Champion(args.model, args.alias)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(champion))
    if args.poll_s > 0:
        threading.Thread(target=_poll, args=(champion, args.poll_s), daemon=True).start()
    host, port = server.server_address[:2]
    print(
        f"serving models:/{args.model}@{args.alias} v{champion.version} on http://{host}:{port}",
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
