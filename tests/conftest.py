"""Test-wide guards: no real network, caches and run dirs under tmp, fresh settings."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's INFO lines (and its "stopping temporary server" at exit, after pytest closed the
# streams) are noise in test output.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Under pytest-xdist each worker gets its own Prefect home (database, local server), so two
# workers' runs never share one SQLite file.
if os.environ.get("PYTEST_XDIST_WORKER") and "PREFECT_HOME" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(
        prefix=f"dspex-prefect-{os.environ['PYTEST_XDIST_WORKER']}-"
    )
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: object) -> bool:
    if isinstance(address, str):  # AF_UNIX path
        return True
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return False


def _guarded(real):  # type: ignore[no-untyped-def]
    def connect(self, address):  # type: ignore[no-untyped-def]
        if not _is_local(address):
            raise ConnectionRefusedError(
                f"tests may not reach the network (tried {address!r}); use dspex.testing"
            )
        return real(self, address)

    return connect


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> object:
    socket.socket.connect = _guarded(_real_connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(_real_connect_ex)  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One temporary Prefect server (and PREFECT_HOME) for the whole session, on demand."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Each test gets its own cache dir, run dir and default settings."""
    import dspex._settings as settings

    monkeypatch.setenv("DSPEX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DSPEX_RUNS_DIR", str(tmp_path / "runs"))
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(settings, "_defaults", settings.Settings())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    import sys

    if "mlflow" in sys.modules:  # the tracking URI is process-global: don't leak it
        sys.modules["mlflow"].set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
