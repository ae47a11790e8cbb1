"""A ConcurrencyLimit's background view (MIPROv2's full evaluations): one cap on calls in
flight, calls made under the limit itself served before background ones, on real LM calls
from several threads."""

from __future__ import annotations

import asyncio
import threading
import time

import dspex
from dspex.datasets import load_task
from dspex.lm import ConcurrencyLimit
from dspex.testing import SimulatedLM


class _InFlight(dspex.Callback):
    """Peak LM calls in flight, and when each call took its slot (with its prompt)."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.started: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def on_lm_start(self, span, lm, request):  # type: ignore[no-untyped-def]
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.started.append((time.perf_counter(), str(request.messages[-1]["content"])))

    def start_of(self, example: dspex.Example) -> float:
        return next(t for t, prompt in self.started if str(example.question) in prompt)

    def on_lm_end(self, span, lm, request, response, error):  # type: ignore[no-untyped-def]
        with self.lock:
            self.now -= 1


def test_foreground_calls_are_served_before_waiting_background_ones() -> None:
    task = load_task("arithmetic")
    dev = task.split(train=0, dev=20, seed=4).dev
    lm = SimulatedLM(task=task, latency=0.05, cache=False)
    program = dspex.Predict("question -> answer: int", lm=lm)
    limit = ConcurrencyLimit(2)
    counter = _InFlight()

    def evaluate(devset: list[dspex.Example], background: bool) -> float:
        chosen = limit.background if background else limit
        with dspex.context(lm_limit=chosen, callbacks=[counter]):
            return dspex.Evaluate(
                devset=devset, metric=lambda e, p, t=None: 1.0, concurrency=16, progress=False
            )(program).score

    # 16 background calls: 2 in flight, 14 waiting, when the foreground ones arrive.
    behind = threading.Thread(target=evaluate, args=(dev[:16], True))
    behind.start()
    deadline = time.monotonic() + 30
    while counter.peak < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    asked = time.perf_counter()
    ahead = evaluate(dev[16:], False)
    behind.join()

    assert ahead == 100.0 and counter.peak == 2  # one cap across both
    assert lm.request_count == 20  # every call made once: only the order changed
    served = max(counter.start_of(ex) for ex in dev[16:])
    overtaken = [ex for ex in dev[:16] if asked < counter.start_of(ex) < served]
    # At most the slots freed while the foreground calls were being queued; first come,
    # first served would have made them wait for the 14 waiting background calls.
    assert len(overtaken) <= 2


def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    limit = ConcurrencyLimit(1)

    async def scenario() -> list[str]:
        order: list[str] = []
        await limit.acquire()
        cancelled = asyncio.ensure_future(limit.acquire())
        waiting = asyncio.ensure_future(limit.background.acquire())
        await asyncio.sleep(0)
        cancelled.cancel()
        limit.release()  # to the background waiter: the foreground one is gone
        await waiting
        order.append(f"in flight {limit.in_flight}")
        limit.background.release()
        order.append(f"in flight {limit.in_flight}")
        return order

    assert asyncio.run(scenario()) == ["in flight 1", "in flight 0"]
    assert repr(limit.background) == "ConcurrencyLimit(1).background"
