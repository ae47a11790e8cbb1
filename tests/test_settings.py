"""Settings: configure < context < explicit; private per thread and per asyncio task."""

import asyncio
import threading

import pytest

import dspex
from dspex._settings import current


def test_context_overrides_configure_and_restores() -> None:
    dspex.configure(labels={"stage": "default"})
    with dspex.context(labels={"trial": 3}):
        assert current().labels == {"stage": "default", "trial": 3}
        with dspex.context(labels={"stage": "inner"}):
            assert current().labels["stage"] == "inner"
        assert current().labels["stage"] == "default"
    assert current().labels == {"stage": "default"}


def test_unknown_setting_is_a_clear_error() -> None:
    with pytest.raises(dspex.ConfigurationError, match="Unknown setting"):
        dspex.configure(lmm=None)


def test_threads_see_their_own_context() -> None:
    seen: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with dspex.context(labels={"who": name}):
            barrier.wait()  # both contexts are active at once
            seen[name] = current().labels["who"]

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": "a", "b": "b"}


async def test_asyncio_tasks_see_their_own_context() -> None:
    async def task(name: str) -> str:
        with dspex.context(labels={"who": name}):
            await asyncio.sleep(0.01)
            return str(current().labels["who"])

    assert await asyncio.gather(task("x"), task("y")) == ["x", "y"]
