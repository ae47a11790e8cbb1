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

    Its :attr:`background` view shares the same slots for work nothing waits for yet (MIPROv2's
    full evaluations): a freed slot goes to a waiting call made under the limit itself first,
    to a background one only when none waits, so background work fills the slots the critical
    path leaves idle and never delays it by more than the calls it already has in flight.

    Example:
        >>> import dspex
        >>> from dspex.lm import ConcurrencyLimit
        >>> limit = ConcurrencyLimit(16)
        >>> with dspex.context(lm_limit=limit):
        ...     pass  # at most 16 LM calls in flight in here
        >>> with dspex.context(lm_limit=limit.background):
        ...     pass  # the same 16 slots, taken only when no call above waits
    """

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            from dspex.errors import UserError

            raise UserError(f"ConcurrencyLimit({max_in_flight}): use 1 or more.")
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._free = max_in_flight
        # Each waiter's future, on the waiter's own loop: foreground waiters, then background
        # ones. A slot freed while someone waits is handed to the first waiter directly (the
        # count stays), so no newcomer can take it meanwhile and the peak in flight is exactly
        # ``max_in_flight``.
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.max_in_flight})"

    @property
    def in_flight(self) -> int:
        """How many slots are taken now (granted to a waiter counts as taken)."""
        with self._lock:
            return self.max_in_flight - self._free

    @property
    def background(self) -> ConcurrencyLimit:
        """This limit's slots for work that waits behind every call made under the limit."""
        return _Background(self)

    async def acquire(self) -> None:
        """Take a slot, waiting on the running loop until one is free."""
        await self._take(0)

    def release(self) -> None:
        """Give a slot back: to the first waiter (foreground before background), else to the
        free count. Any thread."""
        while True:
            with self._lock:
                queue = next((q for q in self._queues if q), None)
                if queue is None:
                    self._free += 1
                    return
                waiter = queue.popleft()
            if _wake(waiter):
                return
            # The waiter's loop is closed: no task of it can take the slot; try the next one.

    async def _take(self, rank: int) -> None:
        with self._lock:
            # A newcomer takes a free slot only if nobody of its rank or before it waits.
            if self._free and not any(self._queues[: rank + 1]):
                self._free -= 1
                return
            waiter = asyncio.get_running_loop().create_future()
            self._queues[rank].append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._queues[rank].remove(waiter)
                    granted = False
                except ValueError:
                    granted = True
            if granted:
                # The slot was handed to us (the wake-up may still be on its way): pass it on.
                self.release()
            raise

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _Background(ConcurrencyLimit):
    """A :class:`ConcurrencyLimit`'s background view: the same slots, served last."""

    def __init__(self, parent: ConcurrencyLimit) -> None:  # no slots of its own
        self.max_in_flight = parent.max_in_flight
        self._parent = parent

    def __repr__(self) -> str:
        return f"{self._parent!r}.background"

    @property
    def in_flight(self) -> int:
        return self._parent.in_flight

    @property
    def background(self) -> ConcurrencyLimit:
        return self

    async def acquire(self) -> None:
        await self._parent._take(1)

    def release(self) -> None:
        self._parent.release()


def _wake(waiter: asyncio.Future[None]) -> bool:
    """Tell ``waiter`` it holds a slot, on its own loop; ``False`` if that loop is closed.

    A waiter cancelled meanwhile is told nothing: it finds itself dequeued and passes the slot
    on (see ``_take``), so every handed-over slot is either used or released exactly once.
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
