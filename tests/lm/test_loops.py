"""One LM from every thread and every event loop at once: its limits hold across all of them.

The server counts requests in flight; each answer takes a while, so calls from the main
thread (sync), a user's long-lived loop and three ``asyncio.run`` threads overlap.
"""

from __future__ import annotations

import asyncio
import contextvars
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


def test_cancelling_a_call_on_a_user_loop_cancels_it_on_dspex_loop(
    server: ScriptedServer,
) -> None:
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
