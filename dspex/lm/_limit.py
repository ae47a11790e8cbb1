"""Limits on LM calls: ``ConcurrencyLimit`` (at most N in flight, across every thread and
event loop) and ``Throttle`` (awaited before every request sent to the provider, e.g. a rate
limit shared by every worker of a deployment)."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from types import TracebackType
from typing import Protocol, runtime_checkable

__all__ = ["ConcurrencyLimit", "Throttle"]


@runtime_checkable
class Throttle(Protocol):
    """Awaited before each request an LM sends (not for cache hits), retries included.

    Set it with ``dspex.context(lm_throttle=...)``. It is awaited on the event loop that makes
    the call, so one shared by several loops must not hold loop-bound state (an
    ``asyncio.Lock`` made on one loop, say). ``tasks.limits.PrefectRateLimit`` is the one
    deployments use: a Prefect global concurrency limit with slot decay, shared by every
    worker talking to the same Prefect server.
    """

    async def acquire(self) -> None:
        """Return when the next request may be sent; raise to refuse it."""


class ConcurrencyLimit:
    """Caps LM calls in flight for everything inside ``dspex.context(lm_limit=...)``.

    One limit holds across every thread and event loop that uses it at once (sync calls on
    dspex's loop, a user's ``asyncio.run``, a notebook's loop): a slot is a count under a
    thread lock, and a call that finds none free waits on a future of its own loop, woken from
    whichever thread frees a slot. Slots go to waiters first come, first served. Use it to keep
    an optimization run's concurrent tasks within a provider's concurrency together.

    Example:
        >>> import dspex
        >>> from dspex.lm import ConcurrencyLimit
        >>> with dspex.context(lm_limit=ConcurrencyLimit(16)):
        ...     pass  # at most 16 LM calls in flight in here
    """

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            from dspex.errors import UserError

            raise UserError(f"ConcurrencyLimit({max_in_flight}): use 1 or more.")
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._free = max_in_flight
        # Each waiter's future, on the waiter's own loop. A slot freed while someone waits is
        # handed to the first waiter directly (the count stays), so no newcomer can take it
        # meanwhile and the peak in flight is exactly ``max_in_flight``.
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.max_in_flight})"

    @property
    def in_flight(self) -> int:
        """How many slots are taken now (granted to a waiter counts as taken)."""
        with self._lock:
            return self.max_in_flight - self._free

    async def acquire(self) -> None:
        """Take a slot, waiting on the running loop until one is free."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove(waiter)
                    granted = False
                except ValueError:
                    granted = True
            if granted:
                # The slot was handed to us (the wake-up may still be on its way): pass it on.
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter, else to the free count. Any thread."""
        while True:
            with self._lock:
                if not self._waiters:
                    self._free += 1
                    return
                waiter = self._waiters.popleft()
            if _wake(waiter):
                return
            # The waiter's loop is closed: no task of it can take the slot; try the next one.

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _wake(waiter: asyncio.Future[None]) -> bool:
    """Tell ``waiter`` it holds a slot, on its own loop; ``False`` if that loop is closed.

    A waiter cancelled meanwhile is told nothing: it finds itself dequeued and passes the slot
    on (see ``acquire``), so every handed-over slot is either used or released exactly once.
    """
    loop = waiter.get_loop()
    if asyncio._get_running_loop() is loop:
        _grant(waiter)
        return True
    try:
        loop.call_soon_threadsafe(_grant, waiter)
    except RuntimeError:  # the loop is closed
        return False
    return True


def _grant(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
