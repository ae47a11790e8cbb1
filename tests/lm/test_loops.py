"""One LM from every thread and every event loop at once: its limits hold across all of them.

The server counts requests in flight; each answer takes a while, so calls from the main
thread (sync, on dspex's loop), a user's long-lived loop and three ``asyncio.run`` threads
overlap. Async calls run on the loop that awaits them; what they share (the limit, the
requests in flight, the connection pools) must hold across loops.
"""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex._runtime import run_sync
from dspex._settings import current
from dspex.errors import LMAuthError, UserError
from dspex.lm import LM, Cache, ConcurrencyLimit
from dspex.testing import DummyLM
from tests.lm._server import Reply, ScriptedServer

CALLS_EACH = 4


def _in_thread(target: Callable[[], Any], errors: list[BaseException]) -> threading.Thread:
    """A thread running ``target`` in a copy of this thread's context (so its settings)."""
    ctx = contextvars.copy_context()

    def run() -> None:
        try:
            ctx.run(target)
        except BaseException as exc:
            errors.append(exc)

    return threading.Thread(target=run, daemon=True)


class UserLoop:
    """A user's own loop running in a thread, as in a notebook or a web app."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_one_lm_from_every_thread_and_loop_keeps_its_concurrency_limit(
    server: ScriptedServer,
) -> None:
    server.delay = 0.08
    lm = LM("openai/sim", api_base=server.base, cache=False, num_retries=0)
    errors: list[BaseException] = []
    answers: dict[str, list[str]] = {}

    async def batch(tag: str) -> None:
        prompts = [f"{tag}-{i}" for i in range(CALLS_EACH)]
        outs = await asyncio.gather(*(lm.acall(p) for p in prompts))
        answers.update(zip(prompts, outs, strict=True))

    def sync_calls() -> None:
        for i in range(CALLS_EACH):
            answers[f"sync-{i}"] = lm(f"sync-{i}")

    user_loop = UserLoop()
    try:
        with dspex.context(lm_limit=ConcurrencyLimit(2)):
            threads = [_in_thread(partial(asyncio.run, batch(f"run{n}")), errors) for n in range(3)]
            for thread in threads:
                thread.start()
            on_user_loop = user_loop.submit(batch("user"))
            sync_calls()
            on_user_loop.result(60)
            for thread in threads:
                thread.join(60)
    finally:
        user_loop.close()

    assert errors == []
    expected = {f"{tag}-{i}" for tag in ("sync", "user", "run0", "run1", "run2") for i in range(4)}
    assert set(answers) == expected
    assert all(out == [f"echo 0: {prompt}"] for prompt, out in answers.items())
    assert server.count == len(expected)
    # Never more than the limit, and the limit reached: calls were not serialised.
    assert server.peak == 2


def test_same_request_from_two_loops_is_sent_once(server: ScriptedServer, tmp_path: Path) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=Cache(tmp_path), num_retries=0)
    server.gate = threading.Event()
    errors: list[BaseException] = []
    answers: list[list[str]] = []
    calling = threading.Semaphore(0)

    async def ask() -> None:
        calling.release()
        answers.append(await lm.acall("same question"))

    threads = [_in_thread(lambda: asyncio.run(ask()), errors) for _ in range(2)]
    user_loop = UserLoop()
    try:
        for thread in threads:
            thread.start()
        on_user_loop = user_loop.submit(ask())
        for _ in range(3):
            assert calling.acquire(timeout=10)
        # Every caller has made its call; the first request is held at the server meanwhile.
        time.sleep(0.3)
        server.gate.set()
        on_user_loop.result(30)
        for thread in threads:
            thread.join(30)
    finally:
        server.gate.set()
        user_loop.close()

    assert errors == []
    assert answers == [["echo 0: same question"]] * 3
    assert server.count == 1


def test_cancelling_a_call_on_a_user_loop_gives_its_slot_back(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False, num_retries=0)
    server.push(Reply(hang=True))

    async def main() -> list[str]:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lm.acall("hangs"), 0.3)
        # The hung request gave its slot back: the next call under the same limit is sent.
        return await asyncio.wait_for(lm.acall("next"), 20)

    with dspex.context(lm_limit=ConcurrencyLimit(1)):
        assert asyncio.run(main()) == ["echo 0: next"]
    assert server.count == 2


def test_settings_and_callbacks_reach_calls_from_a_user_loop(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)
    seen: list[tuple[str, Any]] = []

    class Spy(dspex.Callback):
        def on_lm_start(self, span: Any, lm: Any, request: Any) -> None:
            seen.append(("start", current().labels.get("who")))

        def on_lm_end(self, span: Any, lm: Any, request: Any, response: Any, error: Any) -> None:
            seen.append(("end", error))

    async def main() -> list[str]:
        with dspex.context(callbacks=[Spy()], labels={"who": "user loop"}):
            return await lm.acall("hi")

    assert asyncio.run(main()) == ["echo 0: hi"]
    assert seen == [("start", "user loop"), ("end", None)]


def test_errors_from_dspex_loop_reach_the_user_loop(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False, num_retries=0)
    server.push(Reply(status=401, body={"error": {"message": "bad key"}}))

    async def main() -> None:
        await lm.acall("x")

    with pytest.raises(LMAuthError):
        asyncio.run(main())


def test_a_sync_call_inside_dspex_loop_is_still_refused(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)

    async def inside() -> list[str]:
        return lm("sync from the loop")

    with pytest.raises(UserError, match="acall"):
        run_sync(inside())


def test_an_async_call_runs_on_the_loop_that_awaits_it(server: ScriptedServer) -> None:
    where: list[str] = []

    class Where(dspex.Callback):
        def on_lm_start(self, span: Any, lm: Any, request: Any) -> None:
            where.append(threading.current_thread().name)

    http = LM("openai/sim", api_base=server.base, cache=False)
    # A transport that does not declare itself safe across loops runs on dspex's loop.
    scripted = DummyLM(["a", "b"])

    async def main() -> None:
        await http.acall("on my loop")
        await scripted.acall("on dspex's loop")

    errors: list[BaseException] = []
    with dspex.context(callbacks=[Where()]):
        thread = _in_thread(lambda: asyncio.run(main()), errors)
        thread.name = "user-thread"
        thread.start()
        thread.join(30)
        http("sync")
    assert errors == []
    assert where == ["user-thread", "dspex-loop", "dspex-loop"]


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_limit_waiters_on_other_loops_are_woken_in_turn() -> None:
    limit = ConcurrencyLimit(1)
    loops = [UserLoop() for _ in range(3)]
    order: list[int] = []
    now = peak = 0
    lock = threading.Lock()
    release_first = threading.Event()
    arrived: list[int] = []

    async def hold(tag: int) -> None:
        nonlocal now, peak
        arrived.append(tag)  # then straight into the limit's queue, with no await between
        async with limit:
            with lock:
                now += 1
                peak = max(peak, now)
                order.append(tag)
            if tag == 0:
                await asyncio.get_running_loop().run_in_executor(None, release_first.wait, 10)
            await asyncio.sleep(0.02)
            with lock:
                now -= 1

    try:
        jobs = []
        for tag, user_loop in enumerate(loops):
            jobs.append(user_loop.submit(hold(tag)))
            _wait_for(lambda n=tag + 1: len(arrived) == n)  # in line behind the one before
            time.sleep(0.05)
        assert order == [0] and limit.in_flight == 1
        release_first.set()
        for job in jobs:
            job.result(10)
    finally:
        release_first.set()
        for user_loop in loops:
            user_loop.close()
    assert order == [0, 1, 2]
    assert peak == 1
    assert limit.in_flight == 0


@pytest.mark.parametrize(
    "cancel_first", [False, True], ids=["granted-then-cancelled", "cancelled-then-granted"]
)
def test_a_cancelled_limit_waiter_passes_its_slot_on(cancel_first: bool) -> None:
    # The slot is handed to a waiter on a busy loop, and the waiter is cancelled before that
    # loop gets to run it: the slot must go on to the next waiter, not be lost.
    limit = ConcurrencyLimit(1)
    holder, busy, next_in_line = UserLoop(), UserLoop(), UserLoop()
    blocked, unblock = threading.Event(), threading.Event()
    arrived: list[str] = []

    async def release() -> None:
        limit.release()

    async def acquire(who: str) -> None:
        arrived.append(who)  # then straight into the limit's queue, with no await between
        await limit.acquire()

    try:
        holder.submit(limit.acquire()).result(5)
        cancelled = busy.submit(acquire("busy"))
        _wait_for(lambda: arrived == ["busy"])
        time.sleep(0.05)
        waiting = next_in_line.submit(acquire("next"))
        _wait_for(lambda: arrived == ["busy", "next"])
        time.sleep(0.05)
        busy.loop.call_soon_threadsafe(lambda: (blocked.set(), unblock.wait(10)))
        assert blocked.wait(5)
        if cancel_first:
            cancelled.cancel()  # queued on the busy loop before the hand-over
        holder.submit(release()).result(5)
        cancelled.cancel()
        unblock.set()
        waiting.result(5)  # the next waiter got the slot
        assert cancelled.cancelled()
        assert limit.in_flight == 1
        next_in_line.submit(release()).result(5)
        assert limit.in_flight == 0
    finally:
        unblock.set()
        for user_loop in (holder, busy, next_in_line):
            user_loop.close()


def test_cancelling_one_waiter_does_not_cancel_the_shared_call(
    server: ScriptedServer, tmp_path: Path
) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=Cache(tmp_path), num_retries=0)
    server.gate = threading.Event()
    loops = [UserLoop() for _ in range(3)]

    async def impatient() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lm.acall("same"), 0.2)

    try:
        sender = loops[0].submit(lm.acall("same"))
        _wait_for(lambda: server.count == 1)  # the request is out, held at the server
        gave_up = loops[1].submit(impatient())
        patient = loops[2].submit(lm.acall("same"))
        gave_up.result(10)
        server.gate.set()
        assert sender.result(10) == ["echo 0: same"]
        assert patient.result(10) == ["echo 0: same"]
    finally:
        server.gate.set()
        for user_loop in loops:
            user_loop.close()
    assert server.count == 1


@pytest.mark.parametrize("second", ["answers", "fails"])
def test_a_failed_shared_call_leaves_each_loop_its_own_outcome(
    server: ScriptedServer, tmp_path: Path, second: str
) -> None:
    # The sender's error reaches the sender's loop; a waiter on another loop does not inherit
    # it (it may have other settings: timeout, retries) but makes its own call.
    lm = LM("openai/sim", api_base=server.base, cache=Cache(tmp_path), num_retries=0)
    denied = Reply(status=401, body={"error": {"message": "bad key"}})
    server.push(denied, *([denied] if second == "fails" else []))
    server.gate = threading.Event()
    sender_loop, waiter_loop = UserLoop(), UserLoop()
    try:
        sender = sender_loop.submit(lm.acall("same"))
        _wait_for(lambda: server.count == 1)
        waiter = waiter_loop.submit(lm.acall("same"))
        time.sleep(0.2)
        assert server.count == 1  # waiting for the first, not sent
        server.gate.set()
        with pytest.raises(LMAuthError):
            sender.result(10)
        if second == "fails":
            with pytest.raises(LMAuthError):
                waiter.result(10)
        else:
            assert waiter.result(10) == ["echo 0: same"]
    finally:
        server.gate.set()
        sender_loop.close()
        waiter_loop.close()
    assert server.count == 2


_EXIT_SCRIPT = """
import asyncio, threading
from tests.lm._server import ScriptedServer
from dspex.lm import LM

server = ScriptedServer().start()
lm = LM("openai/sim", api_base=server.base, cache=False)
assert lm("sync") == ["echo 0: sync"]
assert asyncio.run(lm.acall("asyncio.run")) == ["echo 0: asyncio.run"]
by_hand = asyncio.new_event_loop()  # closed without shutting down its async generators
by_hand.run_until_complete(lm.acall("by hand"))
by_hand.close()
running = asyncio.new_event_loop()  # still running at exit
threading.Thread(target=running.run_forever, daemon=True).start()
asyncio.run_coroutine_threadsafe(lm.acall("running"), running).result(10)
assert asyncio.run(lm.acall("again")) == ["echo 0: again"]
print("ok")
"""


def test_every_loops_connections_close_quietly_at_exit() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr == ""
