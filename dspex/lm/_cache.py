"""The LM response cache: a bounded in-memory LRU in front of SQLite on disk.

On disk each entry is one row of JSON text in a WAL-mode SQLite database (never pickle), so
several processes (Prefect workers, notebooks) can share one cache directory. Writes go to a
background writer thread that commits them in batches, so the event loop never waits for
the disk; a durable write (``dspex.context(lm_cache_durable=True)``, what resumable flows
use) commits before the call returns instead. Reads use one connection per thread. Every
unreadable entry, row or file is a miss: the cache may lose answers, never crash a run.

``dspex.Embedder``'s vectors share the cache: one entry per (model, text, params), the
float32 vector base64-encoded in JSON.

Keys hash the request (model, messages, sorted params, rollout id) and nothing else: no API
key, no API base, no headers. Two servers serving the same model therefore share entries,
which is what lets a run resume against a simulator that restarted on another port.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dspex._jsonable import canonical_json, dumps, loads
from dspex.lm._types import LMRequest, LMToolCall, RawCompletion

__all__ = ["Cache", "configure_cache", "default_cache", "request_key"]

_log = logging.getLogger("dspex.lm")

# Request params that are transport settings, not part of what the model is asked.
_NOT_IN_KEY = frozenset({"api_key", "api_base", "base_url", "extra_headers", "headers", "timeout"})
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries "
    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID"
)
_BATCH_MAX = 512
_WRITER_IDLE_S = 2.0
# After the first pending write, wait this long for more so one commit covers many:
# a commit per call would cost the event loop thread GIL hand-offs on every call.
_WRITER_LINGER_S = 0.02


def request_key(request: LMRequest) -> str:
    """The cache key of a request: sha256 of its canonical JSON, without credentials."""
    kwargs = request.kwargs
    if not _NOT_IN_KEY.isdisjoint(kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_IN_KEY}
    payload = {
        "model": request.model,
        "messages": request.messages,
        "kwargs": kwargs,
        "rollout_id": request.rollout_id,
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def _encode(raw: RawCompletion) -> str:
    data: dict[str, Any] = {
        "texts": list(raw.texts),
        "prompt_tokens": raw.prompt_tokens,
        "completion_tokens": raw.completion_tokens,
        "finish_reasons": list(raw.finish_reasons),
        "model": raw.model,
    }
    if raw.tool_calls:  # only then: entries without tool calls keep their old bytes
        data["tool_calls"] = [
            [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in choice]
            for choice in raw.tool_calls
        ]
    return dumps(data).decode()


def _decode_tool_calls(value: Any) -> tuple[tuple[LMToolCall, ...], ...] | None:
    """Stored tool calls (one list per choice); ``None`` when malformed."""
    if not isinstance(value, list):
        return None
    choices = []
    for choice in value:
        if not isinstance(choice, list):
            return None
        calls = []
        for c in choice:
            if not (isinstance(c, dict) and isinstance(c.get("name"), str)):
                return None
            arguments, call_id = c.get("arguments", "{}"), c.get("id")
            if not isinstance(arguments, str) or not (call_id is None or isinstance(call_id, str)):
                return None
            calls.append(LMToolCall(c["name"], arguments, call_id))
        choices.append(tuple(calls))
    return tuple(choices)


def _decode(value: Any) -> RawCompletion | None:
    """Parse a stored value; anything malformed is ``None`` (a miss)."""
    try:
        data = loads(value)
        texts = data["texts"]
        prompt_tokens = data.get("prompt_tokens", 0)
        completion_tokens = data.get("completion_tokens", 0)
        finish = data.get("finish_reasons") or []
        model = data.get("model")
        tool_calls = _decode_tool_calls(data.get("tool_calls", []))
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
        return None
    if not (isinstance(prompt_tokens, int) and isinstance(completion_tokens, int)):
        return None
    if not isinstance(finish, list) or not (model is None or isinstance(model, str)):
        return None
    if tool_calls is None:
        return None
    return RawCompletion(texts, prompt_tokens, completion_tokens, finish, model, tool_calls)


def _decode_vector(value: str) -> bytes | None:
    """A stored embedding vector as float32 bytes; anything malformed is ``None`` (a miss)."""
    try:
        data = loads(value)
        raw = base64.b64decode(data["vector_f32"], validate=True)
    except (TypeError, ValueError, KeyError, AttributeError, binascii.Error):
        return None
    return raw if raw and len(raw) % 4 == 0 else None


class _ThreadConn:
    """A thread's own connection, closed when the thread ends (its ``threading.local`` goes):
    LM calls run on any thread's loop, and a thread per ``asyncio.run`` must not leave an open
    database connection behind each."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        self.conn.close()


class _Disk:
    """SQLite storage: per-thread read connections, one batching writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.enabled = True
        self._local = threading.local()
        self._conns: weakref.WeakSet[_ThreadConn] = weakref.WeakSet()
        self._conns_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, str, str] | threading.Event] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._open_checked()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_here(self) -> sqlite3.Connection:
        """A new connection for this thread, tracked so ``close`` can reach it."""
        held = _ThreadConn(self._connect())
        self._local.held = held
        with self._conns_lock:
            self._conns.add(held)
        return held.conn

    def _open_checked(self) -> None:
        """Open the file once; a file that is not a database is set aside and replaced."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open_here()
            return
        except sqlite3.DatabaseError as exc:
            _log.warning("LM cache %s is unreadable (%s); starting a new one.", self.path, exc)
        except OSError as exc:
            _log.warning(
                "LM cache %s cannot be opened (%s); caching in memory only.", self.path, exc
            )
            self.enabled = False
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{self.path}{suffix}")
            if old.exists():
                old.replace(Path(f"{self.path}{suffix}.corrupt-{stamp}"))
        try:
            self._open_here()
        except (sqlite3.Error, OSError) as exc:
            _log.warning("LM cache %s unusable (%s); caching in memory only.", self.path, exc)
            self.enabled = False

    def _conn(self) -> sqlite3.Connection:
        held: _ThreadConn | None = getattr(self._local, "held", None)
        return self._open_here() if held is None else held.conn

    def get(self, key: str) -> RawCompletion | None:
        if not self.enabled:
            return None
        try:
            row = self._conn().execute("SELECT value FROM entries WHERE key=?", (key,)).fetchone()
        except sqlite3.Error as exc:
            _log.debug("LM cache read failed for %s: %s", key, exc)
            return None
        return None if row is None else _decode(row[0])

    def get_texts(self, keys: list[str]) -> dict[str, str]:
        """The stored text of each key present (embedding vectors are read this way, many
        at once); an unreadable database is all misses."""
        if not self.enabled or not keys:
            return {}
        found: dict[str, str] = {}
        try:
            conn = self._conn()
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, value FROM entries WHERE key IN ({marks})"
                found.update(conn.execute(sql, chunk).fetchall())
        except sqlite3.Error as exc:
            _log.debug("LM cache read failed: %s", exc)
            return {}
        return found

    def put(self, key: str, value: str, *, durable: bool) -> None:
        """Durable: commit before returning (a SIGKILL loses no finished call); otherwise
        queue the write for the writer thread's next batch (~50 us less per call)."""
        if not self.enabled:
            return
        if durable:
            try:
                self._conn().execute(
                    "INSERT OR REPLACE INTO entries VALUES (?,?,?)", (key, value, time.time())
                )
                return
            except sqlite3.Error as exc:  # fall back to the batched path
                _log.debug("LM cache durable write failed for %s: %s", key, exc)
        self._queue.put(("put", key, value))
        self._ensure_writer()

    def delete(self, key: str) -> None:
        """Delete now (not batched), so that a read right after cannot see the entry."""
        if not self.enabled:
            return
        self.flush()
        try:
            self._conn().execute("DELETE FROM entries WHERE key=?", (key,))
        except sqlite3.Error as exc:
            _log.warning("LM cache delete failed for %s: %s", key, exc)

    def clear(self) -> None:
        if not self.enabled:
            return
        self.flush()
        try:
            self._conn().execute("DELETE FROM entries")
        except sqlite3.Error as exc:
            _log.warning("LM cache clear failed: %s", exc)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every write queued so far is committed."""
        if not self.enabled:
            return
        done = threading.Event()
        self._queue.put(done)
        self._ensure_writer()
        done.wait(timeout)

    def close(self) -> None:
        self.flush()
        with self._conns_lock:
            held, self._conns = list(self._conns), weakref.WeakSet()
        for item in held:
            item.conn.close()
        self._local = threading.local()

    def _ensure_writer(self) -> None:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = threading.Thread(
                        target=self._write_loop, name="dspex-cache-writer", daemon=True
                    )
                    self._writer.start()

    def _write_loop(self) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            _log.warning("LM cache writer cannot open %s (%s); writes dropped.", self.path, exc)
            self.enabled = False
            with self._writer_lock:
                self._writer = None
            self._release_waiters()
            return
        try:
            while True:
                try:
                    first = self._queue.get(timeout=_WRITER_IDLE_S)
                except queue.Empty:
                    # Exit when idle; a later put starts a new writer. The check and the
                    # reset happen under the lock that _ensure_writer takes.
                    with self._writer_lock:
                        if self._queue.empty():
                            self._writer = None
                            return
                    continue
                self._write_batch(conn, first)
        finally:
            conn.close()

    def _release_waiters(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, threading.Event):
                item.set()

    def _write_batch(self, conn: sqlite3.Connection, first: Any) -> None:
        if isinstance(first, tuple):
            time.sleep(_WRITER_LINGER_S)
        batch = [first]
        while len(batch) < _BATCH_MAX:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        waiters = [item for item in batch if isinstance(item, threading.Event)]
        rows = [(item[1], item[2], time.time()) for item in batch if isinstance(item, tuple)]
        if rows:
            try:
                with conn:
                    conn.execute("BEGIN")
                    conn.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?)", rows)
            except sqlite3.Error as exc:
                _log.warning("LM cache write of %d entries failed: %s", len(rows), exc)
        for waiter in waiters:
            waiter.set()


class Cache:
    """LM response cache: an in-memory LRU in front of a SQLite file.

    Args:
        directory: where the SQLite file lives; defaults to ``$DSPEX_CACHE_DIR`` or
            ``~/.cache/dspex``.
        memory_max_entries: how many responses the in-memory LRU keeps.
        disk: whether to persist to disk at all (``False``: memory only).
        durable: whether a write commits to disk before the call returns when the context
            does not say (``dspex.context(lm_cache_durable=...)`` or ``put(durable=...)``).

    Example:
        >>> from dspex.lm import LM, Cache
        >>> lm = LM("openai/gpt-4o-mini", cache=Cache("/tmp/lm-cache"))  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        memory_max_entries: int = 10_000,
        disk: bool = True,
        durable: bool = False,
    ) -> None:
        self.directory = Path(directory) if directory is not None else cache_directory()
        self._durable = durable
        self.memory_max_entries = max(0, memory_max_entries)
        self._memory: OrderedDict[str, RawCompletion] = OrderedDict()
        self._lock = threading.Lock()
        self._disk = _Disk(self.directory / "lm_cache.sqlite3") if disk else None
        # Embedding vectors (``dspex.Embedder``), keyed by ``embedding_key``: float32 bytes.
        self._vectors: OrderedDict[str, bytes] = OrderedDict()
        _open_caches.add(self)

    @property
    def durable(self) -> bool:
        """Whether writes commit before the call returns by default (fixed at construction:
        durability for some calls only is ``dspex.context(lm_cache_durable=True)``)."""
        return self._disk is not None and self._durable

    def __repr__(self) -> str:
        disk = f"{self.directory}" if self._disk is not None else "memory only"
        return f"Cache({disk!r}, memory_max_entries={self.memory_max_entries})"

    key = staticmethod(request_key)

    def get(self, key: str) -> RawCompletion | None:
        """The cached completion for ``key``, or ``None`` (corrupt entries are misses)."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        if self._disk is None:
            return None
        hit = self._disk.get(key)
        if hit is not None:
            self._remember(key, hit)
        return hit

    def put(self, key: str, raw: RawCompletion, *, durable: bool | None = None) -> None:
        """Store a completion in memory now and on disk soon (batched), or on disk before
        returning when ``durable`` (``None``: the cache's own default)."""
        self._remember(key, raw)
        if self._disk is not None:
            self._disk.put(key, _encode(raw), durable=self._durable if durable is None else durable)

    def get_vectors(self, keys: list[str]) -> dict[str, bytes]:
        """Cached embedding vectors (little-endian float32 bytes) of the keys present."""
        found: dict[str, bytes] = {}
        with self._lock:
            for key in keys:
                hit = self._vectors.get(key)
                if hit is not None:
                    self._vectors.move_to_end(key)
                    found[key] = hit
        missing = [k for k in keys if k not in found]
        if self._disk is None or not missing:
            return found
        for key, text in self._disk.get_texts(missing).items():
            vector = _decode_vector(text)
            if vector is not None:  # a corrupt or foreign entry is a miss
                found[key] = vector
                self._remember_vector(key, vector)
        return found

    def put_vectors(self, items: dict[str, bytes], *, durable: bool | None = None) -> None:
        """Store embedding vectors (float32 bytes) in memory now and on disk soon."""
        durable = self._durable if durable is None else durable
        for key, vector in items.items():
            self._remember_vector(key, vector)
            if self._disk is not None:
                text = dumps({"vector_f32": base64.b64encode(vector).decode()}).decode()
                self._disk.put(key, text, durable=durable)

    def _remember_vector(self, key: str, vector: bytes) -> None:
        if self.memory_max_entries == 0:
            return
        with self._lock:
            self._vectors[key] = vector
            self._vectors.move_to_end(key)
            if len(self._vectors) > self.memory_max_entries:
                self._vectors.popitem(last=False)

    def delete(self, key: str) -> None:
        """Forget ``key`` everywhere, e.g. because its answer could not be parsed."""
        with self._lock:
            self._memory.pop(key, None)
        if self._disk is not None:
            self._disk.delete(key)

    def clear(self) -> None:
        """Forget every entry, in memory and on disk."""
        with self._lock:
            self._memory.clear()
            self._vectors.clear()
        if self._disk is not None:
            self._disk.clear()

    def flush(self) -> None:
        """Wait until every entry stored so far is on disk."""
        if self._disk is not None:
            self._disk.flush()

    def close(self) -> None:
        """Flush and close the disk connections; the cache still works in memory after."""
        if self._disk is not None:
            self._disk.close()

    def _remember(self, key: str, raw: RawCompletion) -> None:
        if self.memory_max_entries == 0:
            return
        with self._lock:
            self._memory[key] = raw
            self._memory.move_to_end(key)
            if len(self._memory) > self.memory_max_entries:
                self._memory.popitem(last=False)


def cache_directory() -> Path:
    """``$DSPEX_CACHE_DIR``, else ``~/.cache/dspex``: where dspex keeps its caches."""
    env = os.environ.get("DSPEX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dspex"


_open_caches: weakref.WeakSet[Cache] = weakref.WeakSet()
_default_lock = threading.Lock()
_default: Cache | None = None
_default_from_env: str | None = None
_configured = False


def configure_cache(
    directory: str | os.PathLike[str] | None = None,
    *,
    memory_max_entries: int = 10_000,
    disk: bool = True,
    enabled: bool = True,
    durable: bool = False,
) -> Cache | None:
    """Replace the process-wide default cache used by every ``LM(cache=True)``.

    Example:
        >>> import dspex.lm
        >>> dspex.lm.configure_cache(directory="/tmp/dspex-cache")  # doctest: +SKIP
        >>> dspex.lm.configure_cache(enabled=False)  # no caching by default  # doctest: +SKIP
    """
    global _default, _configured, _default_from_env
    new = (
        Cache(directory, memory_max_entries=memory_max_entries, disk=disk, durable=durable)
        if enabled
        else None
    )
    with _default_lock:
        old, _default = _default, new
        _configured, _default_from_env = True, None
    if old is not None:
        old.close()
    return new


def default_cache() -> Cache | None:
    """The default cache: as configured in code, else one at ``$DSPEX_CACHE_DIR``.

    Until :func:`configure_cache` is called, the default follows the environment variable,
    so a test harness that points ``DSPEX_CACHE_DIR`` at a fresh directory gets a fresh cache.
    """
    global _default, _default_from_env
    if _configured:
        return _default
    env = os.environ.get("DSPEX_CACHE_DIR")
    cache = _default
    if cache is not None and env == _default_from_env:
        return cache
    with _default_lock:
        if _configured:
            return _default
        if _default is None or env != _default_from_env:
            old = _default
            _default, _default_from_env = Cache(), env
            if old is not None:
                old.close()
        return _default


def _flush_all() -> None:
    for cache in list(_open_caches):
        try:
            cache.flush()
        except Exception as exc:  # never fail interpreter exit over a cache write
            _log.debug("LM cache flush at exit failed: %s", exc)


atexit.register(_flush_all)
