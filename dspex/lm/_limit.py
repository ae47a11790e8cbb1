"""``ConcurrencyLimit``: at most N LM calls in flight, across every thread and task."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["ConcurrencyLimit"]


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
