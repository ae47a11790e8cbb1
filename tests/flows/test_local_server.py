"""compile()'s local Prefect API server: started once per process, on a thread of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import os, socket, urllib.request
import dspex.flows.local as local
server = local.local_server()
assert local.local_server() is server, "one server per process"
url = server.wait_ready()
assert urllib.request.urlopen(url + "/health").read() == b"true"
children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
server.stop()
with socket.socket() as probe:
    closed = probe.connect_ex(("127.0.0.1", server.port)) != 0
print(url, len(children), closed, server.alive(), flush=True)
"""


def test_local_server_is_a_thread_of_this_process_and_stops(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    url, children, closed, alive = proc.stdout.split()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
    # No child process (its own copy of Prefect cost ~200 MB); stop() frees the port.
    assert (children, closed, alive) == ("0", "True", "False")


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
