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
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED",
        "PREFECT_API_SERVICES_TRIGGERS_ENABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    assert _boot_env() == {
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
        "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    }
    monkeypatch.setenv("PREFECT_API_BLOCKS_REGISTER_ON_START", "true")  # Prefect's older name
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")
    assert _boot_env() == {"PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false"}


EXIT_SCRIPT = """
import atexit, sys
state = {}
# Registered first, so it runs last: after the server's own stop at exit.
atexit.register(lambda: print("stopped-before-atexit-end", not state["server"].alive(), flush=True))
import dspex.flows.local as local
from prefect import flow, task
from prefect.settings import temporary_settings, PREFECT_API_URL

state["server"] = server = local.local_server()

@task
def plus_one(x):
    return x + 1

@flow(persist_result=False)
def tiny():
    return [plus_one(i) for i in range(3)]

with temporary_settings({PREFECT_API_URL: server.api_url}):
    print("result", tiny(), flush=True)

from prefect.server.utilities.messaging.memory import Topic
print("topics", ",".join(sorted(Topic._topics)), flush=True)
"""


def test_the_server_stops_cleanly_when_the_process_exits(tmp_path: Path) -> None:
    # Stopped from atexit, its shutdown found thread pools closed to new work: its background
    # worker retried until stop()'s join gave up (10 s per process exit, the thread left
    # running). Stopped from threading's exit hooks it finishes, after Prefect's event and
    # log workers have drained into it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "result [1, 2, 3]" in proc.stdout
    # The services the flow's records need ran; automations (triggers, actions) did not.
    topics = next(line for line in proc.stdout.splitlines() if line.startswith("topics "))
    assert "events" in topics.split()[1].split(",") and "actions" not in topics
    assert "stopped-before-atexit-end True" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    # Nothing Prefect's client had queued was lost on the way out.
    assert "pending items" not in proc.stderr and "Unable to connect" not in proc.stderr
