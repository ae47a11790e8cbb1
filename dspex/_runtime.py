"""dspex's background event loop: where sync calls run, and LM calls that must stay on one loop.

dspex's LM client is asyncio-native; the sync API (``predict(...)``, ``lm(...)``) is a thin
wrapper that submits the coroutine to a shared loop in a daemon thread and waits
(:func:`run_sync`). An async call awaited on any other loop (a user's ``asyncio.run``) runs on
that loop when what it touches is safe across loops (an LM whose transport says so); an LM
call whose transport holds loop-bound state awaits its work on the shared loop instead
(:func:`run_on_loop`). The caller's ``contextvars`` (settings, labels, callbacks) travel with
the coroutine either way.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, TypeVar, overload

from dspex.errors import UserError

__all__ = ["bounded_gather", "get_loop", "in_loop_thread", "run_on_loop", "run_sync"]

T = TypeVar("T")
Item = TypeVar("Item")

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
    """Run ``coro`` on the shared loop and wait for its result, from any non-loop thread.

    If the wait ends early (``timeout``, ``KeyboardInterrupt``), the coroutine is cancelled.
    """
    if in_loop_thread():
        coro.close()
        raise UserError(
            "A sync dspex call was made from inside dspex's own event loop (e.g. a sync "
            "forward() called from an async module). Use `await module.acall(...)` there."
        )
    fut = _submit(coro)
    try:
        return fut.result(timeout)
    except BaseException:
        fut.cancel()
        raise


class _Mailbox:
    """Callables handed to one loop from other threads, run there in batches.

    ``call_soon_threadsafe`` wakes the loop (a syscall) for every call; a burst of LM calls
    from another loop (64 in flight, each handed over and answered) would pay that twice per
    call. The mailbox wakes its loop once per batch: only the post that finds it empty does.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[Callable[[], None]] = []

    def post(self, item: Callable[[], None]) -> None:
        with self._lock:
            self._items.append(item)
            wake = len(self._items) == 1
        if wake:
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for item in items:
            item()


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = (
    weakref.WeakKeyDictionary()
)


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    box = _mailboxes.get(loop)
    if box is None:
        with _lock:
            box = _mailboxes.get(loop)
            if box is None:
                box = _mailboxes[loop] = _Mailbox(loop)
    return box


async def run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the shared loop from a coroutine running on any other loop.

    The async twin of :func:`run_sync`: a user's ``asyncio.run(...)`` awaiting an LM call
    whose transport is bound to one loop (a local transformers model) gets its answer from
    dspex's loop, where that transport lives. The caller's ``contextvars`` travel with the
    coroutine; cancelling the caller cancels it there. Both hand-overs go through mailboxes,
    so a burst of calls wakes each loop once per batch.
    """
    caller = asyncio.get_running_loop()
    loop = get_loop()
    answer: asyncio.Future[T] = caller.create_future()
    replies = _mailbox(caller)
    ctx = contextvars.copy_context()
    started: list[asyncio.Task[T]] = []

    def _reply(task: asyncio.Task[T]) -> None:  # on the caller's loop
        if answer.done():
            return
        if task.cancelled():
            answer.cancel()
        elif (exc := task.exception()) is not None:
            answer.set_exception(exc)
        else:
            answer.set_result(task.result())

    def _start() -> None:  # on dspex's loop
        if answer.cancelled():  # read across threads: at worst the task starts and is cancelled
            coro.close()
            return
        task = loop.create_task(coro, context=ctx)
        started.append(task)
        task.add_done_callback(lambda t: replies.post(lambda: _reply(t)))

    _mailbox(loop).post(_start)
    try:
        return await answer
    except asyncio.CancelledError:

        def _cancel() -> None:  # on dspex's loop, after _start (the mailbox keeps order)
            if started:
                started[0].cancel()

        _mailbox(loop).post(_cancel)
        raise


def _submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coro`` on the shared loop in a copy of the caller's context (for a caller
    that waits in a thread). Cancelling the returned future cancels the task (or, before it
    starts, closes ``coro``)."""
    loop = get_loop()
    ctx = contextvars.copy_context()
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def _start() -> None:
        if fut.cancelled():
            coro.close()
            return
        task = loop.create_task(coro, context=ctx)

        def _done(t: asyncio.Task[T]) -> None:
            try:
                if t.cancelled():
                    fut.cancel()
                elif (exc := t.exception()) is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(t.result())
            except concurrent.futures.InvalidStateError:
                pass  # the caller cancelled meanwhile; nobody waits for this result

        def _cancelled(f: concurrent.futures.Future[T]) -> None:
            if f.cancelled():
                with contextlib.suppress(RuntimeError):  # the loop closed (interpreter exit)
                    loop.call_soon_threadsafe(task.cancel)

        task.add_done_callback(_done)
        fut.add_done_callback(_cancelled)

    _mailbox(loop).post(_start)
    return fut


def _shutdown() -> None:
    loop = _loop
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(loop.stop)


atexit.register(_shutdown)


@overload
async def bounded_gather(
    fn: Callable[[Item], Coroutine[Any, Any, T]],
    items: Sequence[Item],
    limit: int,
    return_exceptions: Literal[False] = False,
) -> list[T]: ...


@overload
async def bounded_gather(
    fn: Callable[[Item], Coroutine[Any, Any, T]],
    items: Sequence[Item],
    limit: int,
    return_exceptions: Literal[True],
) -> list[T | BaseException]: ...


async def bounded_gather(
    fn: Callable[[Item], Coroutine[Any, Any, T]],
    items: Sequence[Item],
    limit: int,
    return_exceptions: bool = False,
) -> list[T] | list[T | BaseException]:
    """``[await fn(item) for item in items]`` with at most ``limit`` running at once, results in
    order. With ``return_exceptions`` an item's exception (its cancellation included) is its
    result, as with ``asyncio.gather``; without, the first one is raised and the items still
    running are cancelled.

    ``limit`` workers take the items in order, each item in a task of its own (what one sets
    in its context never leaks into the next). Not a task per item behind an
    ``asyncio.Semaphore``: in Python 3.11 the semaphore scans its waiters on every acquire
    and release, which makes N items cost O(N²) CPU.

    Raises:
        ValueError: ``limit`` below 1.

    Example:
        >>> async def double(x: int) -> int:
        ...     return 2 * x
        >>> asyncio.run(bounded_gather(double, [1, 2, 3], limit=2))
        [2, 4, 6]
    """
    if limit < 1:
        raise ValueError(f"bounded_gather(limit={limit}): at least one item must run at a time")
    results: list[Any] = [None] * len(items)
    loop = asyncio.get_running_loop()
    pending = iter(enumerate(items))

    async def worker() -> None:
        me = asyncio.current_task()
        for i, item in pending:
            try:
                results[i] = await loop.create_task(fn(item))
            except asyncio.CancelledError as e:
                # The item's own task was cancelled, not this worker: a result like any error.
                if not return_exceptions or (me is not None and me.cancelling()):
                    raise
                results[i] = e
            except Exception as e:
                if not return_exceptions:
                    raise
                results[i] = e

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(items)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return results
