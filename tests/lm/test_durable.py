"""Cache durability is a context setting: each thread (and task) gets its own.

A durable write commits to SQLite before the LM call returns; any other write is queued for
the cache's writer thread. A write counts as committed when a fresh connection can read it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import dspex
from dspex.lm import LM, Cache, RawCompletion, default_cache
from dspex.tasks._common import durable_lm_cache
from tests.lm._server import ScriptedServer, user


def _committed(db: Path, key: str | None) -> bool:
    assert key is not None
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT 1 FROM entries WHERE key=?", (key,)).fetchone()
    conn.close()
    return row is not None


def _thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    return threading.Thread(target=run, daemon=True)


def test_durability_belongs_to_the_thread_that_entered_it(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base)
    cache = default_cache()
    assert cache is not None and not cache.durable
    db = cache.directory / "lm_cache.sqlite3"
    lm("warm up")  # dspex's loop opens its cache connection now, not under the lock below
    cache.flush()

    other_in, durable_in, other_out, other_done, durable_go = (threading.Event() for _ in range(5))
    keys: dict[str, str | None] = {}
    errors: list[BaseException] = []
    seen: dict[str, bool] = {}

    def other() -> None:
        # Enters and leaves the durable context while the durable thread is inside it: with a
        # process-wide toggle, leaving would switch durability off for that thread too.
        with durable_lm_cache():
            other_in.set()
            assert durable_in.wait(10)
        other_out.set()
        resp = lm.forward(user("from the other thread"))  # outside: batched
        keys["other"] = resp.cache_key
        seen["other"] = _committed(db, resp.cache_key)
        other_done.set()

    def durable() -> None:
        assert other_in.wait(10)
        with durable_lm_cache():
            durable_in.set()
            assert other_out.wait(10) and durable_go.wait(20)
            resp = lm.forward(user("from the durable thread"))
            keys["durable"] = resp.cache_key
            seen["durable"] = _committed(db, resp.cache_key)

    threads = [_thread(other, errors), _thread(durable, errors)]
    for thread in threads:
        thread.start()
    # Hold the database's write lock while the other thread calls: a batched write returns
    # at once and cannot commit meanwhile (a durable one would wait for the lock).
    lock = sqlite3.connect(db, isolation_level=None)
    try:
        assert other_out.wait(10)
        lock.execute("BEGIN IMMEDIATE")
        returned_while_locked = other_done.wait(8)
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    durable_go.set()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert returned_while_locked
    assert seen == {"other": False, "durable": True}
    assert not cache.durable  # nothing process-wide was switched
    cache.flush()
    assert _committed(db, keys["other"])


def test_context_setting_overrides_the_cache_default(tmp_path: Path) -> None:
    durable_cache = Cache(tmp_path / "a", durable=True)
    batched_cache = Cache(tmp_path / "b")
    raw = RawCompletion(["x"], prompt_tokens=1, completion_tokens=1)
    assert durable_cache.durable and not batched_cache.durable

    # Hold each file's write lock: a batched write still returns, and commits only after.
    for cache, durable, expected in [
        (batched_cache, None, False),
        (durable_cache, False, False),
    ]:
        db = cache.directory / "lm_cache.sqlite3"
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            cache.put(f"k-{durable}", raw, durable=durable)
            assert _committed(db, f"k-{durable}") is expected
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        cache.flush()
        assert _committed(db, f"k-{durable}")

    for cache, durable in [(durable_cache, None), (batched_cache, True)]:
        cache.put(f"k2-{durable}", raw, durable=durable)
        assert _committed(cache.directory / "lm_cache.sqlite3", f"k2-{durable}")
    durable_cache.close()
    batched_cache.close()


def test_context_reaches_cache_writes_of_async_calls(server: ScriptedServer) -> None:
    import asyncio

    lm = LM("openai/sim", api_base=server.base)
    cache = default_cache()
    assert cache is not None
    db = cache.directory / "lm_cache.sqlite3"

    async def main() -> str | None:
        with dspex.context(lm_cache_durable=True):
            resp = await lm.aforward(user("from a user loop"))
        return resp.cache_key

    key = asyncio.run(main())
    assert _committed(db, key)
