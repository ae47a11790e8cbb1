"""Run the loopback server: in a background thread (:func:`serve`) or as a subprocess
(:func:`start_server_process`, stopped by PID)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from dspex.errors import UserError
from dspex.testing._core import Faults, Responder
from dspex.testing._server import Server, start

__all__ = ["RunningServer", "ServerProcess", "fetch_stats", "serve", "start_server_process"]


def fetch_stats(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /stats`` of a running server (``url`` is its ``.../v1`` base or root)."""
    root = url.removesuffix("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=timeout) as resp:
        stats: dict[str, Any] = json.loads(resp.read())
    return stats


@dataclass
class RunningServer:
    """A server started by :func:`serve`: its ``url`` (``http://127.0.0.1:PORT/v1``)."""

    url: str
    port: int
    server: Server

    @property
    def request_count(self) -> int:
        return self.server.responder.request_count

    def stats(self) -> dict[str, Any]:
        return self.server.stats()


def _responder_of(target: Any) -> Responder:
    for attr in ("simulator", "script"):
        inner = getattr(target, attr, None)
        if inner is not None:
            return cast(Responder, inner)
    if callable(getattr(target, "reply", None)):
        return cast(Responder, target)
    raise UserError(
        f"serve() takes a SimulatedLM, a DummyLM, a Simulator or a Script; got "
        f"{type(target).__name__}."
    )


@contextlib.contextmanager
def serve(target: Any, port: int = 0, *, latency: float | None = None) -> Iterator[RunningServer]:
    """Serve a ``SimulatedLM``/``DummyLM`` (or their core) over HTTP from a background thread.

    The server shares the double's core, so ``lm.request_count`` counts HTTP requests too.

    Example:
        >>> import dspex
        >>> from dspex.testing import SimulatedLM, serve
        >>> with serve(SimulatedLM("arithmetic")) as srv:  # doctest: +SKIP
        ...     lm = dspex.LM("openai/sim", api_base=srv.url, api_key="x")
        ...     lm("What is 1+1?")
    """
    server = Server(_responder_of(target), latency=latency)
    loop = asyncio.new_event_loop()
    started: queue.Queue[tuple[Any, int] | BaseException] = queue.Queue()

    def _run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.put(loop.run_until_complete(start(server, port)))
        except BaseException as e:  # report bind errors to the caller's thread
            started.put(e)
            return
        loop.run_forever()

    thread = threading.Thread(target=_run, name="dspex-sim-server", daemon=True)
    thread.start()
    result = started.get(timeout=30)
    if isinstance(result, BaseException):
        raise result
    listener, bound = result
    try:
        yield RunningServer(f"http://127.0.0.1:{bound}/v1", bound, server)
    finally:

        async def _close() -> None:
            listener.close()
            server.close_connections()
            await listener.wait_closed()

        asyncio.run_coroutine_threadsafe(_close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@dataclass
class ServerProcess:
    """A server running in a subprocess; ``stop()`` ends it by PID (SIGTERM, then SIGKILL)."""

    url: str
    pid: int
    _proc: subprocess.Popen[str] = field(repr=False)

    def stats(self) -> dict[str, Any]:
        """The server's ``/stats``: ``{"requests": N, ...}``."""
        return fetch_stats(self.url)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process (idempotent); returns its exit code."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._proc.wait(timeout=timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        return self._proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_first_line(stream: IO[str], out: queue.Queue[str]) -> None:
    out.put(stream.readline())


def start_server_process(
    task: str = "arithmetic",
    *,
    port: int = 0,
    latency: float = 0.0,
    seed: int = 0,
    faults: Faults | str | None = None,
    dummy_file: str | Path | None = None,
    startup_timeout: float = 60.0,
) -> ServerProcess:
    """Start ``python -m dspex.testing.server`` and wait until it listens.

    Example:
        >>> from dspex.testing import start_server_process
        >>> with start_server_process("arithmetic", latency=0.05) as proc:  # doctest: +SKIP
        ...     print(proc.url, proc.stats()["requests"])
        http://127.0.0.1:41234/v1 0

    Raises:
        UserError: if the server does not come up within ``startup_timeout`` seconds.
    """
    cmd = [
        sys.executable,
        "-m",
        "dspex.testing.server",
        "--port",
        str(port),
        "--task",
        task,
        "--latency",
        str(latency),
        "--seed",
        str(seed),
    ]
    if faults is not None:
        spec = faults if isinstance(faults, str) else _faults_spec(faults)
        cmd += ["--faults", spec]
    if dummy_file is not None:
        cmd += ["--dummy-file", str(dummy_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    stdout = cast(IO[str], proc.stdout)  # set by stdout=PIPE
    threading.Thread(target=_read_first_line, args=(stdout, lines), daemon=True).start()
    try:
        line = lines.get(timeout=startup_timeout)
    except queue.Empty:
        line = ""
    if not line.startswith("listening "):
        ServerProcess("", proc.pid, proc).stop()
        raise UserError(
            f"The simulator server did not start (command: {' '.join(cmd)}); it printed "
            f"{line!r}. See its stderr above."
        )
    return ServerProcess(line.split(" ", 1)[1].strip(), proc.pid, proc)


def _faults_spec(faults: Faults) -> str:
    return (
        f"429={faults.rate_429},500={faults.rate_500},hang={faults.rate_hang},"
        f"malformed={faults.rate_malformed},truncated={faults.rate_truncated},"
        f"retry_after={faults.retry_after}"
    )
