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


# The longest modules, longest first (their tests' durations in CI). They start first so that
# no worker picks up a two-minute test at the end of the run while the other sits idle; with
# work stealing (pytest_xdist_make_scheduler below) the other worker takes tests from the back
# of the list. The two deployment modules stay next to each other: they share one Prefect
# server and worker (tests/deployments/harness.py).
_LONGEST_FIRST = (
    "tests/reliability/test_local_runs.py",
    "tests/flows/test_mipro_durable.py",
    "tests/deployments/test_prefect_yaml.py",
    "tests/reliability/test_deployments.py",
    "tests/flows/test_dask.py",
    "tests/flows/test_resume.py",
    "tests/flows/test_local_server.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run modules with slow tests before the others, the longest known ones first.

    Whole modules move (a stable sort by module), so module-scoped fixtures are still set up
    once per module and the order inside a module is kept.
    """
    slow = {item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        if path in _LONGEST_FIRST:
            return _LONGEST_FIRST.index(path)
        return len(_LONGEST_FIRST) + (0 if path in slow else 1)

    items.sort(key=rank)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``-n``'s default scheduling (``load``) becomes work stealing: each worker starts on its
    half of the ordered collection and an idle one takes tests from the back of the other's
    queue, so the long modules ordered first never wait behind a worker's chunk of short ones.
    Another ``--dist`` mode given on the command line (``loadfile``, ``loadgroup``...) is kept."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import WorkStealingScheduling

    return WorkStealingScheduling(config, log)  # type: ignore[arg-type]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Before a test's fixtures are torn down: which test runs next in this process, so a
    module fixture can hand a costly resource on to it (tests/deployments/harness.py)."""
    from tests.deployments.harness import NEXT_ITEM

    item.session.stash[NEXT_ITEM] = nextitem
