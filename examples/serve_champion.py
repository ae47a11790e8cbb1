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
environment. An error answers ``{"error": {"message": ..., "type": ...}}`` with a 4xx/5xx
status. Standard library only, besides dspex (whose loopback servers share the HTTP plumbing
used here): put it behind your own server in production.
"""

from __future__ import annotations

import argparse
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

import dspex
import dspex.mlflow
from dspex._serving import error_body, make_json_server, serve_until_interrupted, server_url


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


def make_server(champion: Champion, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The service's HTTP server (not started): JSON in, JSON out, errors reported."""

    def predict(inputs: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(inputs, dict):
            return 400, error_body("send a JSON object of the inputs", "invalid_request_error")
        return 200, champion.predict(inputs)

    def healthz(_: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"model": champion.name, "alias": champion.alias, "version": champion.version}

    return make_json_server(
        {
            ("GET", "/healthz"): healthz,
            ("POST", "/predict"): predict,
            ("POST", "/reload"): lambda _: (200, champion.reload()),
        },
        host=host,
        port=port,
    )


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
    server = make_server(champion, args.host, args.port)
    if args.poll_s > 0:
        threading.Thread(target=_poll, args=(champion, args.poll_s), daemon=True).start()
    url = server_url(server)
    print(f"serving models:/{args.model}@{args.alias} v{champion.version} on {url}", flush=True)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
