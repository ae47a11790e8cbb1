"""One background event loop that every sync call runs on.

dspex's LM client is asyncio-native; the sync API (``predict(...)``, ``lm(...)``) is a thin
wrapper that submits the coroutine to a shared loop in a daemon thread and waits. One loop for
the process means one connection pool, shared by every thread. The caller's ``contextvars``
(settings, labels, callbacks) travel with the coroutine.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from dspex.errors import UserError

__all__ = ["get_loop", "in_loop_thread", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use."""
    global _loop, _thread
    loop = _loop
    if loop is not None and not loop.is_closed():
        return loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            # Sync-only modules run in worker threads under async evaluation; the stdlib default
            # (cpu_count + 4 workers) would cap a 64-wide evaluation at 6 on two cores.
            new.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="dspex")
            )
            ready = threading.Event()

            def _run() -> None:
                asyncio.set_event_loop(new)
                new.call_soon(ready.set)
                new.run_forever()

            thread = threading.Thread(target=_run, name="dspex-loop", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = new, thread
        return _loop


def in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the shared loop and wait for its result, from any non-loop thread."""
    if in_loop_thread():
        coro.close()
        raise UserError(
            "A sync dspex call was made from inside dspex's own event loop (e.g. a sync "
            "forward() called from an async module). Use `await module.acall(...)` there."
        )
    loop = get_loop()
    ctx = contextvars.copy_context()
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def _start() -> None:
        task = loop.create_task(coro, context=ctx)

        def _done(t: asyncio.Task[T]) -> None:
            if fut.cancelled():
                return
            if t.cancelled():
                fut.cancel()
            elif (exc := t.exception()) is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(t.result())

        task.add_done_callback(_done)

    loop.call_soon_threadsafe(_start)
    return fut.result(timeout)


def _shutdown() -> None:
    loop = _loop
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(loop.stop)


atexit.register(_shutdown)
