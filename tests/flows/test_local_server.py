"""compile()'s local Prefect API server: started once per process, gone with the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import os, sys
import dspex.flows.local as local
server = local.local_server()
assert local.local_server() is server, "one server per process"
url = server.wait_ready()
# A new database, and no block types registered at start: a saved block registers its own.
os.environ["PREFECT_API_URL"] = url
from prefect.blocks.system import Secret
Secret(value="s3cr3t").save("dspex-local-check", overwrite=True)
assert Secret.load("dspex-local-check").get() == "s3cr3t"
print(url, server.process.pid, flush=True)
os.kill(os.getpid(), 9)  # no atexit: the server must notice on its own
"""


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie (exited, not yet reaped by init) counts as gone.
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return False


def test_local_server_answers_and_dies_with_its_parent(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    url, pid = proc.stdout.split()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
    try:
        assert _gone(int(pid), timeout=10), "the server outlived its parent"
    finally:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_port_taken_before_the_server_binds_it_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    import dspex.flows.local as local

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        real = local._free_port
        monkeypatch.setattr(local, "_free_port", lambda: next(ports, None) or real())
        server = local.LocalServer()
        try:
            assert server.wait_ready().startswith("http://127.0.0.1:")
            assert server._attempts == 2 and server.port != taken.getsockname()[1]
        finally:
            server.stop()


def test_warm_up_loads_what_the_flow_needs_before_its_first_lm_call() -> None:
    """What compile() does while the local server boots: MLflow's model code and Optuna's
    SQL storage (ORM models, migration scripts) are loaded, quietly (warnings are errors
    here)."""
    from dspex.flows._spine import warm_up

    warm_up()
    assert "mlflow.pyfunc" in sys.modules
    assert "optuna.storages._rdb.models" in sys.modules
    assert "alembic.script" in sys.modules


def test_the_server_skips_block_registration_unless_the_environment_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dspex.flows.local import _boot_env

    for name in (
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START",
        "PREFECT_API_BLOCKS_REGISTER_ON_START",
        "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION",
        "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION",
    ):
        monkeypatch.delenv(name, raising=False)
    assert _boot_env() == {
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
        "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
    }
    monkeypatch.setenv("PREFECT_API_BLOCKS_REGISTER_ON_START", "true")  # Prefect's older name
    assert _boot_env() == {"PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false"}
