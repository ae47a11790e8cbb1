"""Limits on LM calls: ``ConcurrencyLimit`` (at most N in flight, across every thread and
task) and ``Throttle`` (awaited before every request sent to the provider, e.g. a rate limit
shared by every worker of a deployment)."""

from __future__ import annotations

import asyncio
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

    Every LM call runs on dspex's one event loop, whichever thread or loop made it (an async
    call from a user's ``asyncio.run`` hops there), so one semaphore on that loop bounds calls
    from every thread, event loop, Prefect task and evaluation that shares the limit — e.g. an
    optimization run whose concurrent tasks must not exceed a provider's concurrency together.

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
        # Binds to dspex's loop on first contention; only that loop ever acquires it.
        self._semaphore = asyncio.Semaphore(max_in_flight)

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.max_in_flight})"

    def semaphore(self) -> asyncio.Semaphore:
        """The one semaphore, acquired on dspex's loop around each LM call."""
        return self._semaphore
