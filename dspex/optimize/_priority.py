"""A run-wide LM concurrency limit that serves the calls something waits for first.

An optimization run mixes LM calls on its critical path (the bootstrap's passes, the
proposals, the trial batches: each step waits for the one before) with calls nothing waits
for until the end (MIPROv2's full evaluations). Under a first-come, first-served limit the
background calls hold slots the next step's calls queue behind, and between steps, when the
critical path has no call to make, slots sit idle. :class:`PriorityLimit` keeps the one cap
on calls in flight and hands a freed slot to a waiting foreground call first, to a
background call (made under :attr:`PriorityLimit.background`) only when no foreground call
waits: background work fills the gaps and never delays the critical path by more than the
calls it already has in flight.

Only the order in which waiting calls get a slot changes: every call is still made, with the
same arguments, so results, scores and request counts are those of the plain limit.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from dspex.lm import ConcurrencyLimit

__all__ = ["PriorityLimit"]


class PriorityLimit(ConcurrencyLimit):
    """At most ``max_in_flight`` LM calls in flight; foreground calls are served first.

    Use it as ``lm_limit`` (foreground), and its :attr:`background` view for work that
    nothing waits for yet; both share the same slots.

    Example:
        >>> import dspex
        >>> limit = PriorityLimit(16)
        >>> with dspex.context(lm_limit=limit.background):
        ...     pass  # calls in here take a slot only when no foreground call waits
    """

    def __init__(self, max_in_flight: int) -> None:
        super().__init__(max_in_flight)
        self._slots = threading.Lock()
        self._available = max_in_flight
        # Waiters' futures, each on its waiter's own loop; a freed slot is handed to the
        # first foreground waiter, else to the first background one (the count stays).
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )
        self.background: ConcurrencyLimit = _Background(self)

    def __repr__(self) -> str:
        return f"PriorityLimit({self.max_in_flight})"

    @property
    def in_flight(self) -> int:
        """How many slots are taken now (granted to a waiter counts as taken)."""
        with self._slots:
            return self.max_in_flight - self._available

    async def acquire(self) -> None:
        """Take a slot as a foreground call."""
        await self._take(0)

    def release(self) -> None:
        """Give a slot back: to the first foreground waiter, else the first background one,
        else to the free count. Any thread."""
        while True:
            with self._slots:
                queue = next((q for q in self._queues if q), None)
                if queue is None:
                    self._available += 1
                    return
                waiter = queue.popleft()
            if _wake(waiter):
                return
            # The waiter's loop is closed: no task of it can take the slot; try the next.

    async def _take(self, rank: int) -> None:
        with self._slots:
            # A newcomer takes a free slot only if nobody of its rank or above waits.
            if self._available and not any(self._queues[: rank + 1]):
                self._available -= 1
                return
            waiter = asyncio.get_running_loop().create_future()
            self._queues[rank].append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            with self._slots:
                try:
                    self._queues[rank].remove(waiter)
                    granted = False
                except ValueError:
                    granted = True
            if granted:  # handed to us while we were cancelled: pass it on
                self.release()
            raise


class _Background(ConcurrencyLimit):
    """The background view of a :class:`PriorityLimit`: same slots, served last."""

    def __init__(self, parent: PriorityLimit) -> None:
        super().__init__(parent.max_in_flight)
        self._parent = parent

    def __repr__(self) -> str:
        return f"{self._parent!r}.background"

    @property
    def in_flight(self) -> int:
        return self._parent.in_flight

    async def acquire(self) -> None:
        await self._parent._take(1)

    def release(self) -> None:
        self._parent.release()


def _wake(waiter: asyncio.Future[None]) -> bool:
    """Tell ``waiter`` it holds a slot, on its own loop; ``False`` if that loop is closed."""
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
    if not waiter.done():  # a waiter cancelled meanwhile finds itself dequeued: see _take
        waiter.set_result(None)
