"""dspex._runtime.bounded_gather: what the MLflow pyfunc model's rows and the Embedder's
batches run through (a worker per slot, not a task per item behind a semaphore)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from dspex._runtime import bounded_gather

_seen: contextvars.ContextVar[int | None] = contextvars.ContextVar("_seen", default=None)


async def test_results_in_order_at_most_limit_at_once_each_item_in_its_own_context() -> None:
    running, peak, leaked = 0, 0, []

    async def item(x: int) -> int:
        nonlocal running, peak
        leaked.append(_seen.get())  # an earlier item's value would show here
        _seen.set(x)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (x % 3))
        running -= 1
        return x * x

    assert await bounded_gather(item, list(range(50)), limit=4) == [x * x for x in range(50)]
    assert peak == 4
    assert leaked == [None] * 50
    assert await bounded_gather(item, [], limit=4) == []


async def test_failures_are_results_or_stop_the_rest() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def item(x: int) -> int:
        started.append(x)
        if x == 1:
            raise ValueError(f"bad {x}")
        try:
            await asyncio.sleep(0.05 if x == 0 else 0)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    results = await bounded_gather(item, [0, 1, 2], limit=2, return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad 1"

    started.clear()
    with pytest.raises(ValueError, match="bad 1"):
        await bounded_gather(item, [0, 1, 2, 3], limit=2)
    # Item 0 was still running when item 1 failed: cancelled; nothing after the failure started
    # except what the other worker had already taken.
    assert cancelled == [0]
    assert 3 not in started


async def test_an_items_own_cancellation_is_its_result_and_a_limit_below_one_is_refused() -> None:
    async def item(x: int) -> int:
        if x == 1:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # the item's own task, not the caller
            await asyncio.sleep(0)
        return x

    results = await bounded_gather(item, [0, 1, 2], limit=2, return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], asyncio.CancelledError)
    with pytest.raises(ValueError, match="at least one"):
        await bounded_gather(item, [0], limit=0)
