"""The code cannot read the host's files or environment, nor reach the network.

Each test tries every route a Pyodide program has to the host: Python's own APIs (which see
only Pyodide's in-memory file system), and the JavaScript runtime through the ``js`` module
(Deno's APIs, Node's compatibility layer, fetch), which Deno's permissions refuse.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dspex.sandbox import PythonInterpreter

# Runs each attempt (an expression; ``await`` allowed) and reports what it got or raised.
TRY_ALL = """
import inspect, js, pyodide_js

async def attempt(source):
    try:
        value = eval(source, globals())
        if hasattr(value, "then") or inspect.isawaitable(value):
            value = await value
        if hasattr(value, "text") and callable(value.text):  # a fetch Response
            value = await value.text()
        return "GOT " + repr(value)[:300]
    except BaseException as exc:
        return "REFUSED " + type(exc).__name__ + ": " + str(exc)[:300]

[await attempt(source) for source in attempts]
"""


def _run_attempts(
    interpreter: PythonInterpreter, attempts: list[str], **extra: object
) -> list[str]:
    outcomes = interpreter(TRY_ALL, {"attempts": attempts, **extra})
    assert isinstance(outcomes, list) and len(outcomes) == len(attempts)
    return [str(outcome) for outcome in outcomes]


def test_code_cannot_read_a_sentinel_file(interpreter: PythonInterpreter, tmp_path: Path) -> None:
    secret = "sentinel-file-6f1c2b"
    sentinel = tmp_path / "secret.txt"
    sentinel.write_text(secret)
    attempts = [
        "open(path).read()",
        "__import__('pathlib').Path(path).read_text()",
        "__import__('os').listdir(folder)",
        "js.Deno.readTextFileSync(path)",
        "js.Deno.readTextFile(path)",
        "js.Deno.readDirSync(folder)",
        "js.eval('import(\"node:fs\")').then(lambda fs: fs.readFileSync(path, 'utf8'))",
        "pyodide_js.mountNodeFS('/host', folder)",
        "open('/host/secret.txt').read()",
    ]
    outcomes = _run_attempts(interpreter, attempts, path=str(sentinel), folder=str(tmp_path))
    for source, outcome in zip(attempts, outcomes):
        assert outcome.startswith("REFUSED"), (source, outcome)
        assert secret not in outcome
    # Python sees Pyodide's in-memory file system; Deno refuses the real one.
    assert "FileNotFoundError" in outcomes[0]
    assert "NotCapable" in outcomes[3] and "--allow-read" in outcomes[3]


@pytest.fixture()
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, address = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(address)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


# Node's net.connect reports a refusal as an 'error' event: a promise makes it an outcome.
NODE_CONNECT = """(port) => import("node:net").then((net) => new Promise((ok, fail) => {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("connect", () => ok("connected"));
  socket.on("error", fail);
}))"""
WEBSOCKET = """(port) => new Promise((ok, fail) => {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`);
  socket.onopen = () => ok("open");
  socket.onerror = (event) => fail(new Error(event.message ?? "websocket error"));
})"""


def test_code_cannot_reach_a_loopback_listener(
    interpreter: PythonInterpreter, listener: tuple[int, list[object]]
) -> None:
    port, accepted = listener
    attempts = [
        "js.fetch(url)",
        "js.Deno.connect(js.JSON.parse(options))",
        "js.eval(NODE_CONNECT)(port)",
        "__import__('socket').create_connection(('127.0.0.1', port), timeout=2)",
        "__import__('urllib.request').request.urlopen(url, timeout=2).read()",
        "__import__('pyodide.http').http.pyfetch(url)",
        "js.eval(WEBSOCKET)(port)",
    ]
    options = f'{{"hostname": "127.0.0.1", "port": {port}}}'
    url = f"http://127.0.0.1:{port}/"
    helpers = {"NODE_CONNECT": NODE_CONNECT, "WEBSOCKET": WEBSOCKET}
    outcomes = _run_attempts(interpreter, attempts, url=url, port=port, options=options, **helpers)
    # A connection would have been accepted by now; give a stray one time to arrive anyway.
    time.sleep(0.5)
    assert accepted == []
    for source, outcome in zip(attempts, outcomes):
        assert outcome.startswith("REFUSED"), (source, outcome)
    for source, outcome in zip(attempts, outcomes):
        assert "--allow-net" in outcome or "unreachable" in outcome, (source, outcome)


def test_code_cannot_read_a_sentinel_environment_variable(
    sandbox_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sentinel-env-93ad41"
    monkeypatch.setenv("DSPEX_SANDBOX_SENTINEL", secret)
    # A process started while the variable is set in the host's environment.
    with PythonInterpreter(cache_dir=sandbox_cache) as fresh:
        attempts = [
            "__import__('os').environ.get(name)",
            "dict(__import__('os').environ)",
            "js.Deno.env.get(name)",
            "js.Deno.env.toObject()",
            "js.eval('(name) => process.env[name]')(name)",
            "js.eval('(name) => import(\"node:process\").then((p) => p.default.env[name])')(name)",
        ]
        outcomes = _run_attempts(fresh, attempts, name="DSPEX_SANDBOX_SENTINEL")
    for source, outcome in zip(attempts, outcomes):
        assert secret not in outcome, (source, outcome)
    # Deno refuses outright; Python's os.environ is Pyodide's own, without the host's.
    assert outcomes[0] == "GOT None"
    for source, outcome in zip(attempts[2:], outcomes[2:]):
        assert outcome.startswith("REFUSED") and "--allow-env" in outcome, (source, outcome)
