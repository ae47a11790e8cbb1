"""Run a flow in this process, as ``optimizer.compile(...)`` and the CLI do.

With no Prefect server configured (no ``PREFECT_API_URL``), flows need a temporary local API
server. Here it runs on a thread of this process, started before the flow's imports, which
wait for it to boot: two threads importing the same packages at once can deadlock on module
locks, and its boot migrates its database with Alembic, whose state is process-global (the
MLflow store may be migrated meanwhile). On a thread it shares this process's Prefect,
SQLAlchemy, FastAPI and pydantic: ~75 MB more here instead of a ~200 MB child process that
loads them again (Prefect's own temporary server is such a child). The server lives as long
as this process (a notebook's second ``compile()`` pays nothing) and is stopped at exit.

Deployments don't come through here: their workers call the flows with the server's settings
(heartbeats on, a shared result storage).
"""

from __future__ import annotations

import atexit
import contextvars
import importlib.util
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dspex._paths import runs_dir
from dspex.errors import DspexError
from dspex.optimize import EvaluateParams, NightlyParams, OptimizeParams

__all__ = [
    "LocalServer",
    "evaluate",
    "experiment",
    "fewshot",
    "finetune",
    "local_server",
    "local_settings",
    "mipro",
    "nightly",
    "plan_promotion",
]

_LOCK = threading.Lock()
_SERVER: LocalServer | None = None
# Unless the environment says otherwise, the server does not register Prefect's built-in
# block types at start: with registration memoized it still loads and hashes every block
# type and collection's metadata at each start, a large part of its boot on the critical
# path of compile(). A block saved here registers its own type when saved (dspex's result
# storage does; so does a Secret a user saves), and loading one needs only its document.
# Nor does it run automations (the triggers and actions services): nothing can define one
# on a server that lives and dies with this process, and starting them (their consumers and
# an API client) and passing every event through them cost ~0.5 s of the compile's CPU.
_BOOT_DEFAULTS = (  # each setting's environment names, Prefect's current one first
    ("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", "PREFECT_API_BLOCKS_REGISTER_ON_START"),
    (
        "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION",
        "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION",
    ),
    ("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "PREFECT_API_SERVICES_TRIGGERS_ENABLED"),
)


def _boot_env() -> dict[str, str]:
    """The boot defaults the environment does not set under any of their names."""
    return {
        names[0]: "false" for names in _BOOT_DEFAULTS if not any(n in os.environ for n in names)
    }


class LocalServer:
    """Prefect's API server (``prefect.server.api.server:create_app`` under uvicorn) on a
    daemon thread of this process, on 127.0.0.1, started as Prefect's own temporary server
    is: no UI, only the services a temporary server runs, the database under
    ``PREFECT_HOME``. On a thread it shares this process's Prefect, SQLAlchemy, FastAPI and
    pydantic instead of loading them again in a child process (~200 MB there; ~75 MB here).
    """

    def __init__(self) -> None:
        if importlib.util.find_spec("prefect") is None:
            raise DspexError("Prefect is not installed; install dspex with its dependencies.")
        # Imported here, on the caller's thread, not on the server's: two threads importing
        # the same packages at once can deadlock on Python's module locks.
        import uvicorn  # noqa: F401
        from prefect.server.api.server import create_app  # noqa: F401

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))  # bound here: no other process can take the port
        self.port: int = self._sock.getsockname()[1]
        self._server: Any = None
        self._failure: str | None = None
        self._log = _Captured()
        # The caller's Prefect settings (``temporary_settings`` included) hold on the thread.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._serve,), name="dspex-prefect-server", daemon=True
        )
        self._thread.start()
        # Waited for here, before the caller goes on: its boot runs Prefect's database
        # migrations with Alembic, whose operation context is process-global, and the caller
        # may be creating an MLflow store with Alembic at the same time (seen: KeyError
        # 'config' in Alembic, one of the two failing). Booted, the server uses Alembic no more.
        self.wait_ready()

    def _serve(self) -> None:
        import logging

        import uvicorn
        from prefect.server.api.server import create_app
        from prefect.settings import temporary_settings

        logger = logging.getLogger("uvicorn.error")
        logger.addHandler(self._log)
        try:
            with temporary_settings(updates=_boot_settings()):
                app = create_app(ephemeral=True, ignore_cache=True)
                config = uvicorn.Config(
                    app, log_config=None, log_level="error", access_log=False, lifespan="on"
                )
                self._server = uvicorn.Server(config)
                self._server.run(sockets=[self._sock])
        except BaseException as e:  # uvicorn exits with SystemExit on a failed start
            self._failure = f"{type(e).__name__}: {e}"
        finally:
            logger.removeHandler(self._log)
            self._sock.close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def ready(self) -> bool:
        """Whether it answers already (no waiting)."""
        return self._server is not None and bool(self._server.started) and self.alive()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Block until the server has started; returns its API URL."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive():
                failure = self._failure or "no error raised"
                raise DspexError(
                    f"Prefect's local API server stopped while starting ({failure}); its "
                    f"log:\n{self._log.text()}\nSet PREFECT_API_URL to use a running Prefect "
                    "server instead."
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DspexError(
                    f"Prefect's local API server did not start within {timeout:.0f} s; its "
                    f"log:\n{self._log.text()}\nSet PREFECT_API_URL to use a running Prefect "
                    "server instead."
                )
            time.sleep(0.02)
        return self.api_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self.alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)


class _Captured(logging.Handler):
    """The last log lines of the server's start, for the error that reports a failed one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self._lines = [*self._lines[-50:], self.format(record)]

    def text(self) -> str:
        return "\n".join(self._lines)[-4000:]


def _boot_settings() -> dict[Any, Any]:
    """The server thread's settings: no UI, no telemetry (a temporary server would send it),
    and :func:`_boot_env` as Prefect settings."""
    import prefect.settings

    unset = _boot_env()
    return {
        prefect.settings.PREFECT_UI_ENABLED: False,
        prefect.settings.PREFECT_SERVER_ANALYTICS_ENABLED: False,
        **{
            getattr(prefect.settings, names[1]): False
            for names in _BOOT_DEFAULTS
            if names[0] in unset
        },
    }


def _needs_server() -> bool:
    """No server configured and temporary servers allowed (read without importing Prefect
    where the environment already answers)."""
    if os.environ.get("PREFECT_API_URL"):
        return False
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

        return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())
    # Profiles may set the API URL too: decided again once Prefect is imported.
    return os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true").lower() not in (
        "0",
        "false",
    )


def local_server() -> LocalServer | None:
    """This process's local API server, starting it if needed; None when a server is
    configured."""
    global _SERVER
    if not _needs_server():
        return None
    with _LOCK:
        if _SERVER is None or not _SERVER.alive():
            _SERVER = LocalServer()
            _stop_at_exit(_SERVER)
        return _SERVER


def _stop_at_exit(server: LocalServer) -> None:
    """Stop ``server`` when the interpreter exits, before thread pools refuse new work.

    The server's shutdown runs its background worker's last steps through ``to_thread``;
    once the interpreter's shutdown has begun, thread pools refuse new work and that worker
    retries until the join times out (seen: 10 s of a busy loop at the end of every
    ``dspex optimize``). Threading's exit hooks run before that refusal and in reverse
    order of registration: Prefect's event and log workers, registered on their first use
    after this, drain into the server before it stops. They also run before non-daemon
    threads are joined, so a compile left running on one after the main thread ends fails
    with "Failed to reach API" (before, it hung: Prefect's own workers stop at that point
    too); join such a thread before the main thread returns.
    """
    # concurrent.futures registers its own hook (the refusal) when first imported, which
    # LocalServer's imports (asyncio, uvicorn) have done by now: registered after it, this
    # one runs before it.
    import concurrent.futures.thread  # noqa: F401

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(server.stop)
            return
    except RuntimeError:  # started during the interpreter's shutdown: too late for the hook
        pass
    # Not CPython's threading, or too late: plain atexit, still bounded by stop()'s join.
    atexit.register(server.stop)


def _discard(server: LocalServer) -> None:
    global _SERVER
    with _LOCK:
        if _SERVER is server:
            _SERVER = None
    server.stop()


@contextmanager
def local_settings(
    params: OptimizeParams | EvaluateParams | NightlyParams,
    server: LocalServer | None = None,
) -> Iterator[None]:
    """Prefect settings for a flow run started in this process.

    Task results persist under ``<runs>/prefect-results``, an owner-only folder (Prefect
    resolves result storage when the flow starts, so this must wrap the call), the flow does
    not wait ~1 s at exit for its heartbeat thread, and the API is ``server`` (see
    :func:`local_server`) when given.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_UI_URL,
        temporary_settings,
    )

    from dspex.mlflow import configure_tracking, ensure_experiment

    if isinstance(params, NightlyParams):
        params = params.optimize
    runs = runs_dir(params.runs_dir)
    results = runs / "prefect-results"
    results.mkdir(mode=0o700, parents=True, exist_ok=True)
    results.chmod(0o700)  # made before with the umask's mode
    updates: dict[Any, Any] = {
        PREFECT_LOCAL_STORAGE_PATH: results,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
    }
    if server is not None and PREFECT_API_URL.value():  # a profile names a server after all
        _discard(server)
        server = None
    # Both are needed before the first task: the MLflow store and (below) the server's URL.
    configure_tracking(params.tracking.tracking_uri, runs_dir=runs)
    ensure_experiment(params.tracking.experiment, runs_dir=runs)
    if server is not None:
        updates[PREFECT_API_URL] = server.wait_ready()
        updates[PREFECT_UI_URL] = ""  # it serves no UI: no "View at" links to nowhere
    with temporary_settings(updates=updates):
        yield


def _run(server: LocalServer | None, flow: Any, params: Any) -> dict[str, Any]:
    """Run ``flow`` in this process, on ``server`` when given.

    Callers start the server (:func:`local_server`) before importing the flow's module: its
    boot imports Prefect's server code on the caller's thread, before anything else imports
    the same packages on another (see :class:`LocalServer`).
    """
    if isinstance(params, OptimizeParams):
        from dspex.flows._runners import with_task_runner

        flow = with_task_runner(flow, params)
    runs = runs_dir((params.optimize if isinstance(params, NightlyParams) else params).runs_dir)
    with local_settings(params, server):
        from dspex.flows._results import json_only_storage
        from dspex.flows._stale import crash_stale_runs, forget, record_running

        crash_stale_runs(runs)

        def running(flow: Any, flow_run: Any, state: Any) -> None:
            record_running(runs, flow_run.id)
            started.append(flow_run.id)

        started: list[Any] = []
        flow = flow.with_options(
            # Read back as JSON only: a result file names its own serializer (flows/_results.py).
            result_storage=json_only_storage(runs / "prefect-results"),
            persist_result=bool(flow.persist_result),
            on_running=[*flow.on_running_hooks, running],
        )
        from dspex.flows._progress import progress

        try:
            with progress(flow.name):  # one live line instead of a log line per task
                result: dict[str, Any] = flow(params)
        finally:
            for flow_run_id in started:
                forget(runs, flow_run_id)  # finished one way or another, not stale
        return result


def fewshot(params: OptimizeParams) -> dict[str, Any]:
    """The few-shot optimizer's flow (``params.optimizer``) in this process."""
    server = local_server()
    from dspex.flows import fewshot as module

    return _run(server, module.FLOWS[params.optimizer], params)


def mipro(params: OptimizeParams) -> dict[str, Any]:
    """The MIPROv2 flow in this process."""
    server = local_server()
    from dspex.flows import mipro as module

    return _run(server, module.mipro, params)


def evaluate(params: EvaluateParams) -> dict[str, Any]:
    """The evaluation flow in this process."""
    server = local_server()
    from dspex.flows import evaluate as module

    return _run(server, module.evaluate, params)


def nightly(params: NightlyParams) -> dict[str, Any]:
    """The promotion flow in this process (``dspex promote``)."""
    server = local_server()
    from dspex.flows import nightly as module

    return _run(server, module.nightly, params)


def experiment(params: OptimizeParams) -> dict[str, Any]:
    """Any optimizer's flow in this process (``dspex optimize``)."""
    # The optimizer's own flow, as the experiment flow's run_optimizer picks it: a flow object
    # that _run can give its result storage and run record.
    if params.optimizer == "MIPROv2":
        return mipro(params)
    if params.optimizer == "BootstrapFinetune":
        return finetune(params)
    return fewshot(params)


def plan_promotion(params: NightlyParams) -> dict[str, Any]:
    """What ``dspex promote`` would do (``--dry-run``): no flow, no LM call."""
    from dspex.flows.nightly import plan

    return plan(params)


def finetune(params: OptimizeParams) -> dict[str, Any]:
    """The BootstrapFinetune flow in this process."""
    server = local_server()
    from dspex.flows import finetune as module

    return _run(server, module.finetune, params)
