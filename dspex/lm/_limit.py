"""Limits on LM calls: ``ConcurrencyLimit`` (at most N in flight, across every thread and
task) and ``Throttle`` (awaited before every request sent to the provider, e.g. a rate limit
shared by every worker of a deployment)."""

from __future__ import annotations

import asyncio
import threading
from typing import Protocol, runtime_checkable

__all__ = ["ConcurrencyLimit", "Throttle"]


@runtime_checkable
class Throttle(Protocol):
    """Awaited before each request an LM sends (not for cache hits), retries included.

    Set it with ``dspex.context(lm_throttle=...)``. ``tasks.limits.PrefectRateLimit`` is the
    one deployments use: a Prefect global concurrency limit with slot decay, shared by every
    worker talking to the same Prefect server.
    """

    async def acquire(self) -> None:
        """Return when the next request may be sent; raise to refuse it."""


class ConcurrencyLimit:
    """Caps LM calls in flight for everything inside ``dspex.context(lm_limit=...)``.

    Every LM call runs on dspex's one event loop, so one semaphore there bounds calls from
    every thread, Prefect task and evaluation that shares the limit — e.g. an optimization run
    whose concurrent tasks must not exceed a provider's concurrency together.

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
        self._semaphores: dict[int, asyncio.Semaphore] = {}

    def semaphore(self) -> asyncio.Semaphore:
        """The semaphore for the running loop (created on first use there)."""
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            sem = self._semaphores.get(loop_id)
            if sem is None:
                sem = self._semaphores[loop_id] = asyncio.Semaphore(self.max_in_flight)
            return sem
