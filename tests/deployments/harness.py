"""A real Prefect server with deployments/prefect.yaml deployed and a process worker, shared by
the test modules that run deployments (tests/deployments, tests/reliability/test_deployments.py).

Starting one costs a server, two ``prefect`` CLI calls and a worker (~30 s on a CI runner), so
a module's ``deployed`` fixture hands its deployment on to the next module when the next test
this process runs asks for one too (the test order in tests/conftest.py puts those modules
together), and stops it otherwise. Every process it starts is stopped (by its process group).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")

# The test this process runs next, set by tests/conftest.py before a test's fixtures are torn
# down: a module fixture keeps its deployment alive when that test needs one.
NEXT_ITEM: pytest.StashKey[pytest.Item | None] = pytest.StashKey()


@dataclass(frozen=True)
class Deployed:
    env: dict[str, str]
    tmp: Path
    results: Path  # the worker's PREFECT_LOCAL_STORAGE_PATH
    worker_log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def running_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Start ``prefect server start`` with its home, database and the LM cache under
    ``tmp_path``; yields the environment that reaches it, and stops it at exit."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "DSPEX_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.25)
        yield env
    finally:
        _stop(server)
        log.close()


def _prefect(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [PREFECT, "--no-prompt", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


@contextmanager
def _deploy(tmp: Path) -> Iterator[Deployed]:
    """Both deployments of deployments/prefect.yaml and a worker that runs them."""
    with running_server(tmp) as server_env:
        results = tmp / "worker-results"
        env = {
            **server_env,
            "PREFECT_LOCAL_STORAGE_PATH": str(results),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }
        _prefect(env, "work-pool", "create", "dspex-process", "--type", "process")
        _prefect(env, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
        log_path = tmp / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "dspex-process", "--limit", "1"],
                env=env,
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield Deployed(env, tmp, results, log_path)
            finally:
                _stop(worker)


_KEPT: list[tuple[Deployed, ExitStack]] = []  # handed on to the next module


def shared_deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """The body of a module-scoped ``deployed`` fixture: the deployment the previous module
    handed on, or a new one; handed on again if the next test uses ``deployed`` too."""
    if _KEPT:
        deployed, stack = _KEPT.pop()
    else:
        stack = ExitStack()
        request.config.add_cleanup(stack.close)  # a hand-on nobody took: stopped at exit
        deployed = stack.enter_context(_deploy(tmp_path_factory.mktemp("deployed")))
    try:
        yield deployed
    finally:
        nextitem = request.session.stash.get(NEXT_ITEM, None)
        if nextitem is not None and "deployed" in getattr(nextitem, "fixturenames", ()):
            _KEPT.append((deployed, stack))
        else:
            stack.close()
