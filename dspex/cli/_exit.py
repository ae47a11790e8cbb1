"""Leaving the ``dspex`` command: everything the interpreter's exit runs that saves or stops
something, then no teardown.

After its exit hooks a Python process tears its modules down object by object: with Prefect,
MLflow, pandas and pyarrow loaded that took 2-3 s of CPU at the end of every ``dspex`` command
(``dspex demo``: 2.2-3.3 s measured between the last ``atexit`` hook and the process's end),
and nothing in it saves anything. So the command runs, in the interpreter's own order,
threading's exit hooks (Prefect's event and log workers drain; the local Prefect server stops;
non-daemon threads are joined) and the ``atexit`` hooks (trace writers and the LM cache flush,
MLflow, logging, ``weakref.finalize`` callbacks, temporary folders), flushes the standard
streams, and ends the process with its exit status. Code that calls :func:`dspex.cli.main`
(tests, a user's script) gets the normal interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["exit_without_teardown"]


def exit_without_teardown(code: int) -> NoReturn:
    """Run the exit hooks as the interpreter would, then end the process with ``code``.

    Raises:
        SystemExit: where this interpreter lacks the hooks' runners (not CPython), the
            normal exit.
    """
    run_threading: Callable[[], Any] | None = getattr(threading, "_shutdown", None)
    run_atexit: Callable[[], Any] | None = getattr(atexit, "_run_exitfuncs", None)
    if (
        run_threading is None
        or run_atexit is None
        or threading.current_thread() is not (threading.main_thread())
    ):
        raise SystemExit(code)
    _flush()
    run_threading()
    run_atexit()
    _flush()
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe: nothing more to write
            pass
