"""The deployment-wide LM rate limit: a Prefect global concurrency limit with slot decay.

Every LM request of a run takes one slot (``prefect.concurrency.asyncio.rate_limit``) before
it is sent, so all workers talking to one Prefect server share the provider's rate. Once a
limit is configured — ``lm_rate_limit`` in the run's parameters, or ``DSPEX_LM_RATE_LIMIT`` on
the worker — it must exist: the run fails before its first LM call rather than run
unthrottled. Create one with::

    prefect gcl create dspex-lm --limit 10 --slot-decay-per-second 5
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dspex._settings import context
from dspex.errors import ConfigurationError

__all__ = ["ENV_VAR", "TIMEOUT_ENV_VAR", "PrefectRateLimit", "lm_rate_limit"]

ENV_VAR = "DSPEX_LM_RATE_LIMIT"
# How long one request may wait for a slot before it fails (default: as long as it takes).
TIMEOUT_ENV_VAR = "DSPEX_LM_RATE_LIMIT_TIMEOUT_S"


class PrefectRateLimit:
    """A ``dspex.lm.Throttle`` that takes one slot of a Prefect global concurrency limit
    (strict: a missing limit is an error, never a free pass)."""

    def __init__(self, name: str, timeout_s: float | None = None) -> None:
        self.name = name
        self.timeout_s = timeout_s

    async def acquire(self) -> None:
        """Take a slot; a limit deleted or deactivated since the run started is an error here
        (Prefect's own acquisition would let the request through unthrottled)."""
        from prefect.client.orchestration import get_client
        from prefect.concurrency.asyncio import rate_limit
        from prefect.exceptions import ObjectNotFound

        async with get_client() as client:
            try:
                limit = await client.read_global_concurrency_limit_by_name(self.name)
            except ObjectNotFound:
                limit = None
        self._require_usable(limit)
        await rate_limit(self.name, occupy=1, timeout_seconds=self.timeout_s, strict=True)

    def check(self) -> None:
        """Raise ``ConfigurationError`` unless the limit exists, is active and decays."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                limit = client.read_global_concurrency_limit_by_name(self.name)
            except ObjectNotFound:
                limit = None
        self._require_usable(limit)

    def _require_usable(self, limit: Any) -> None:
        fix = (
            f"create it with `prefect gcl create {self.name} --limit N "
            "--slot-decay-per-second R` (R requests per second), or unset lm_rate_limit / "
            f"{ENV_VAR}."
        )
        if limit is None:
            raise ConfigurationError(
                f"The LM rate limit {self.name!r} is configured but does not exist on the Prefect "
                f"server; {fix}"
            )
        if not limit.active or not limit.slot_decay_per_second:
            raise ConfigurationError(
                f"The LM rate limit {self.name!r} is inactive or has no slot decay (a plain "
                f"concurrency limit would never refill); {fix}"
            )


@contextmanager
def lm_rate_limit(params: Any) -> Iterator[PrefectRateLimit | None]:
    """Throttle every LM request inside by the run's configured limit (checked first);
    ``params`` is the run's parameters or the limit's name."""
    configured = params if isinstance(params, str) else getattr(params, "lm_rate_limit", None)
    name = configured or os.environ.get(ENV_VAR) or None
    if name is None:
        yield None
        return
    timeout = os.environ.get(TIMEOUT_ENV_VAR)
    throttle = PrefectRateLimit(name, float(timeout) if timeout else None)
    throttle.check()
    with context(lm_throttle=throttle):
        yield throttle
