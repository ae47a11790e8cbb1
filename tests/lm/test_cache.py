"""The response cache: hits, bypasses, rollout ids, eviction, persistence, corruption."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from dspex.errors import LMServerError
from dspex.lm import LM, Cache, LMRequest, RawCompletion, configure_cache, default_cache
from dspex.lm import _cache as cache_module
from dspex.lm._cache import request_key
from tests.lm._server import Reply, ScriptedServer, user


@pytest.fixture
def lm(server: ScriptedServer) -> LM:
    return LM("openai/sim", api_base=server.base, retry_backoff=(0.0, 0.0))


async def test_second_identical_call_is_a_hit_with_no_request(
    lm: LM, server: ScriptedServer
) -> None:
    first = await lm.aforward(user("q"), temperature=0.0)
    second = await lm.aforward(user("q"), temperature=0.0)
    assert server.count == 1
    assert second.outputs == first.outputs
    assert second.cache_hit and not first.cache_hit
    usage = second.usage
    assert (usage.calls, usage.cache_hits, usage.prompt_tokens, usage.completion_tokens) == (
        1,
        1,
        0,
        0,
    )
    assert (usage.cached_prompt_tokens, usage.cached_completion_tokens) == (10, 5)
    assert lm.history[-1].cache_hit


async def test_cache_false_bypasses_read_and_write(lm: LM, server: ScriptedServer) -> None:
    await lm.aforward(user("q"), cache=False)
    await lm.aforward(user("q"), cache=False)
    assert server.count == 2
    await lm.aforward(user("q"))  # nothing was written by the cache=False calls
    assert server.count == 3


async def test_lm_level_cache_false(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)
    await lm.aforward(user("q"))
    resp = await lm.aforward(user("q"))
    assert server.count == 2 and resp.cache_key is None


async def test_rollout_id_and_params_give_distinct_keys(lm: LM, server: ScriptedServer) -> None:
    await lm.aforward(user("q"))
    await lm.aforward(user("q"), rollout_id=1)
    await lm.aforward(user("q"), rollout_id=2)
    await lm.aforward(user("q"), temperature=1.0)
    assert server.count == 4
    await lm.aforward(user("q"), rollout_id=1)
    assert server.count == 4
    assert all("rollout_id" not in seen.body for seen in server.seen)


def test_key_ignores_credentials_headers_and_param_order() -> None:
    base = LMRequest("openai/x", ({"role": "user", "content": "q"},), {"a": 1, "b": 2})
    same = LMRequest(
        "openai/x",
        ({"content": "q", "role": "user"},),
        {"b": 2, "a": 1, "extra_headers": {"Authorization": "Bearer sk-abcdefgh1"}},
    )
    other = LMRequest("openai/x", base.messages, {"a": 1, "b": 2}, rollout_id=0)
    assert request_key(base) == request_key(same)
    assert request_key(base) != request_key(other)


async def test_failures_are_not_cached(lm: LM, server: ScriptedServer) -> None:
    server.push(Reply(500, {"error": "x"}))
    lm_no_retry = lm.copy(num_retries=0)
    with pytest.raises(LMServerError):
        await lm_no_retry.aforward(user("q"))
    resp = await lm.aforward(user("q"))
    assert not resp.cache_hit and server.count == 2


async def test_evict_and_uncache(lm: LM, server: ScriptedServer) -> None:
    resp = await lm.aforward(user("q"), temperature=0.0, rollout_id=7)
    lm.evict(user("q"), temperature=0.0, rollout_id=7)
    again = await lm.aforward(user("q"), temperature=0.0, rollout_id=7)
    assert not again.cache_hit and server.count == 2
    assert again.cache_key == resp.cache_key
    lm.uncache(again)
    assert not (await lm.aforward(user("q"), temperature=0.0, rollout_id=7)).cache_hit
    assert server.count == 3


async def test_disk_cache_survives_a_new_process_view(lm: LM, server: ScriptedServer) -> None:
    await lm.aforward(user("persist"))
    store = default_cache()
    assert store is not None
    store.flush()
    fresh = Cache(store.directory)  # a new memory layer over the same file
    other = LM("openai/sim", api_base="http://127.0.0.1:9/v1", cache=fresh)  # unreachable
    resp = await other.aforward(user("persist"))
    assert resp.cache_hit and resp.outputs == ["echo 0: persist"]
    fresh.close()


def _entries(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT key, value FROM entries").fetchall()


async def test_corrupt_value_is_a_miss(tmp_path: Path, server: ScriptedServer) -> None:
    store = Cache(tmp_path / "c", memory_max_entries=0)  # no memory layer: read the disk
    lm = LM("openai/sim", api_base=server.base, cache=store)
    await lm.aforward(user("q"))
    store.flush()
    db = tmp_path / "c" / "lm_cache.sqlite3"
    assert len(_entries(db)) == 1
    for garbage in ("{not json", '{"texts": [1, 2]}', "[]", '"x"'):
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE entries SET value=?", (garbage,))
        resp = await lm.aforward(user("q"), cache=True)
        assert not resp.cache_hit
        store.flush()
    assert server.count == 5
    store.close()


async def test_garbage_database_file_is_set_aside(tmp_path: Path, server: ScriptedServer) -> None:
    directory = tmp_path / "c"
    directory.mkdir()
    (directory / "lm_cache.sqlite3").write_bytes(b"\x00garbage" * 1000)
    store = Cache(directory)
    lm = LM("openai/sim", api_base=server.base, cache=store)
    assert not (await lm.aforward(user("q"))).cache_hit
    assert (await lm.aforward(user("q"))).cache_hit
    store.flush()
    assert len(_entries(directory / "lm_cache.sqlite3")) == 1
    assert list(directory.glob("lm_cache.sqlite3.corrupt-*"))
    store.close()


def test_memory_lru_is_bounded(tmp_path: Path) -> None:
    store = Cache(tmp_path, memory_max_entries=2, disk=False)
    raw = RawCompletion(["a"])
    for key in ("k1", "k2", "k3"):
        store.put(key, raw)
    assert store.get("k1") is None and store.get("k3") is raw


def test_default_cache_follows_env_until_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSPEX_CACHE_DIR", str(tmp_path / "one"))
    first = default_cache()
    assert first is not None and first.directory == tmp_path / "one"
    monkeypatch.setenv("DSPEX_CACHE_DIR", str(tmp_path / "two"))
    second = default_cache()
    assert second is not None and second.directory == tmp_path / "two"
    monkeypatch.setattr(cache_module, "_configured", False)
    monkeypatch.setattr(cache_module, "_default", None)
    assert configure_cache(enabled=False) is None
    assert default_cache() is None
    configured = configure_cache(tmp_path / "three", memory_max_entries=5)
    assert default_cache() is configured
    monkeypatch.setattr(cache_module, "_configured", False)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_threads_that_end_leave_no_cache_connection_open(tmp_path: Path) -> None:
    # LM calls run on whichever thread's loop awaits them (a thread per asyncio.run, say);
    # each thread reads and commits durable writes on its own connection.
    cache = Cache(tmp_path, durable=True)
    raw = RawCompletion(["a"], 1, 1, ["stop"])

    def open_cache_files() -> int:
        names = []
        for fd in Path("/proc/self/fd").iterdir():
            try:
                names.append(os.readlink(fd))
            except OSError:
                pass  # closed meanwhile
        return sum(1 for name in names if str(tmp_path) in name)

    def work(i: int) -> None:
        cache.put(f"key-{i}", raw)
        assert cache.get(f"key-{i}") == raw

    open_after = []
    for i in range(5):
        thread = threading.Thread(target=work, args=(i,))
        thread.start()
        thread.join(30)
        gc.collect()
        open_after.append(open_cache_files())
    # SQLite may keep one closed connection's file open for reuse while another connection
    # of the process holds a lock on it; what matters is that nothing piles up per thread.
    assert len(set(open_after)) == 1, open_after
    cache.close()
