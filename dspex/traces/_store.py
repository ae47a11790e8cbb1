"""Trace storage: a buffered, crash-safe Parquet writer, and compaction of finished runs.

Layout::

    <runs_dir>/traces/run_id=<id>/part-<uuid>.parquet     one file per flush
    <runs_dir>/traces/run_id=<id>/.part-<uuid>.parquet.tmp  a flush in progress (never read)

Durability: a part is written under a hidden temporary name, fsynced, then renamed into
place with ``os.replace`` (atomic on POSIX and Windows), so a reader globbing ``*.parquet``
never sees a half-written file and a process killed with SIGKILL loses at most the rows still
in the writer's buffer (at most ``flush_rows`` rows or ``flush_seconds`` of calls).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex import _paths
from dspex._jsonable import dumps
from dspex._redact import redact_text
from dspex.errors import UserError
from dspex.traces._parts import quarantine
from dspex.traces._schema import (
    COLUMNS,
    READABLE_VERSIONS,
    REQUIRED,
    SCHEMA_VERSION_KEY,
    TEXT_COLUMNS,
    TIMESTAMP_COLUMNS,
    trace_schema,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CompactionResult",
    "TraceWriter",
    "compact",
    "default_runs_dir",
    "run_dir",
    "validate_run_id",
]

logger = logging.getLogger("dspex.traces")

_RUN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Columns holding JSON text: a non-string value there is JSON-encoded rather than rejected.
_JSON_COLUMNS = frozenset({"inputs", "messages", "response", "outputs"})
# Temp files older than this were left by a killed process; compaction removes them.
_STALE_TEMP_SECONDS = 600.0


def default_runs_dir() -> Path:
    """The runs directory, absolute: ``$DSPEX_RUNS_DIR`` if set, else ``./dspex-runs``.

    Example:
        >>> default_runs_dir().is_absolute()
        True
    """
    return _paths.runs_dir()


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is safe as a directory name, else raise ``UserError``.

    Example:
        >>> validate_run_id("nightly-2024.06.01")
        'nightly-2024.06.01'
    """
    if (
        not isinstance(run_id, str)
        or not _RUN_ID.fullmatch(run_id)
        or set(run_id) == {"."}  # "." and ".." would escape the traces directory
    ):
        raise UserError(
            f"Invalid run id {run_id!r}: use 1-200 letters, digits, '_', '-' or '.', with no "
            "path separators (e.g. 'nightly-2024-06-01')."
        )
    return run_id


def run_dir(runs_dir: str | os.PathLike[str] | None, run_id: str) -> Path:
    """The directory holding a run's trace parts: ``<runs_dir>/traces/run_id=<id>``."""
    return _paths.runs_dir(runs_dir) / "traces" / f"run_id={validate_run_id(run_id)}"


class TraceWriter:
    """Buffers trace rows and writes them to Parquet parts from a background thread.

    :meth:`add` only appends to a list under a lock, so it is safe and cheap on the LM hot
    path, from the event loop thread or any worker thread. A daemon thread flushes when the
    buffer reaches ``flush_rows`` rows and every ``flush_seconds``; it converts the batch to
    Arrow, redacts the text columns (a second guard behind the recorder) and writes one part
    with temp-file + rename. :meth:`close` flushes and stops the thread; it also runs at normal
    interpreter exit.

    Rows that cannot be stored (a required column is ``None``, a value of the wrong type) are
    dropped, logged on the ``dspex.traces`` logger and counted in :attr:`dropped_rows`; they
    never fail the LM call that produced them.

    Args:
        runs_dir: the runs directory; ``None`` means :func:`default_runs_dir`.
        run_id: the run's id; becomes the ``run_id=<id>`` partition directory.
        flush_rows: write a part once this many rows are buffered.
        flush_seconds: write buffered rows at least this often.
        compression: the Parquet codec (``"zstd"``, ``"snappy"``, ``"none"``).
        fsync: fsync each part before the rename, so a power loss cannot leave an empty part.

    Example:
        >>> import tempfile, time
        >>> from dspex.traces import TraceWriter
        >>> now = time.time()
        >>> row = {
        ...     "span_id": "s1", "parent_span_id": None, "kind": "lm", "stage": "eval",
        ...     "trial": None, "labels": {"stage": "eval"}, "module_path": "predict",
        ...     "module_class": "Predict", "predictor": "predict", "signature": "q -> a",
        ...     "model": "openai/gpt-4o-mini", "inputs": None, "messages": None,
        ...     "response": None, "outputs": None, "prompt_tokens": 10,
        ...     "completion_tokens": 2, "cost": 0.0001, "latency_ms": 250.0,
        ...     "cache_hit": False, "rollout_id": None, "error_type": None,
        ...     "error_message": None, "started_at": now - 0.25, "ended_at": now,
        ... }
        >>> with TraceWriter(tempfile.mkdtemp(), "demo-run") as writer:
        ...     writer.add(row)
        >>> writer.rows_written
        1
    """

    def __init__(
        self,
        runs_dir: str | os.PathLike[str] | None,
        run_id: str,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 2.0,
        compression: str = "zstd",
        fsync: bool = True,
    ) -> None:
        if flush_rows < 1 or not flush_seconds > 0:
            raise UserError(
                f"TraceWriter needs flush_rows >= 1 and flush_seconds > 0 "
                f"(got {flush_rows}, {flush_seconds})."
            )
        self.run_id = validate_run_id(run_id)
        self.directory = run_dir(runs_dir, run_id)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.compression = compression
        self.fsync = fsync
        self.rows_written = 0
        self.dropped_rows = 0
        self.parts_written = 0
        self._buffer: list[Mapping[str, Any]] = []
        self._lock = threading.Lock()  # guards _buffer and _closed
        self._write_lock = threading.Lock()  # one batch written at a time; flush() waits on it
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"dspex-trace-writer[{run_id}]", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, row: Mapping[str, Any]) -> None:
        """Queue one row (a dict keyed by :data:`~dspex.traces.COLUMNS`); never blocks on I/O.

        The writer keeps a reference to ``row``: do not mutate it afterwards.
        """
        with self._lock:
            if self._closed:
                raise UserError(
                    f"TraceWriter for run {self.run_id!r} is closed; open a new one to record "
                    "more rows."
                )
            self._buffer.append(row)
            full = len(self._buffer) >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write every row added so far, and wait until it is on disk.

        Raises:
            OSError: the part could not be written (the rows of that batch are lost).
        """
        self._write_pending(raise_errors=True)

    def close(self) -> None:
        """Flush and stop the background thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._write_pending(raise_errors=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._write_pending(raise_errors=False)

    def _write_pending(self, *, raise_errors: bool) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return
            try:
                table, problems = rows_to_table(batch)
                if problems:
                    self.dropped_rows += len(batch) - table.num_rows
                    logger.error(
                        "dspex.traces: dropped %d invalid trace row(s) of run %r; first: %s",
                        len(batch) - table.num_rows,
                        self.run_id,
                        problems[0],
                    )
                if table.num_rows:
                    write_part(self.directory, table, self.compression, fsync=self.fsync)
                    self.rows_written += table.num_rows
                    self.parts_written += 1
            except Exception:
                self.dropped_rows += len(batch)
                if raise_errors:
                    raise
                # The background thread must survive (the next batch may succeed), and the LM
                # calls that produced these rows must not fail because tracing did.
                logger.exception(
                    "dspex.traces: could not write %d trace row(s) of run %r to %s",
                    len(batch),
                    self.run_id,
                    self.directory,
                )


# --- rows -> Arrow --------------------------------------------------------------------------


def _micros(value: Any) -> int | None:
    """Epoch microseconds from epoch seconds or a datetime (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int((value - _EPOCH) // _MICROSECOND)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected epoch seconds or a datetime, got {type(value).__name__}")
    return round(value * 1_000_000)


def _labels(value: Any) -> list[tuple[str, str | None]]:
    items: Iterable[Any] = value.items() if isinstance(value, Mapping) else (value or ())
    return [(str(k), None if v is None else str(v)) for k, v in items]


def _text(value: Any, *, json_column: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        if not json_column:
            raise TypeError(f"expected a string, got {type(value).__name__}")
        value = _dumps(value)
    return redact_text(value)


def _dumps(value: Any) -> str:
    return dumps(value).decode()


def _column(name: str, rows: Sequence[Mapping[str, Any]], type_: pa.DataType) -> pa.Array:
    import pyarrow as pa

    values = [row.get(name) for row in rows]
    if name in TEXT_COLUMNS:
        json_column = name in _JSON_COLUMNS
        values = [_text(v, json_column=json_column) for v in values]
    elif name in TIMESTAMP_COLUMNS:
        return pa.array([_micros(v) for v in values], pa.int64()).cast(type_)
    elif name == "labels":
        values = [_labels(v) for v in values]
    return pa.array(values, type_)


def _build(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    import pyarrow as pa

    schema = trace_schema()
    arrays = [_column(f.name, rows, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> tuple[pa.Table, list[str]]:
    """Convert row dicts to a table with the trace schema, text columns redacted.

    Returns the table of the valid rows, and what was wrong with the others (empty when every
    row was valid).
    """
    import pyarrow as pa

    try:
        table = _build(rows)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # Rare: find the bad rows one by one rather than lose the whole batch.
        good, dropped = [], []
        for row in rows:
            try:
                _build([row])
                good.append(row)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
                dropped.append(f"row {row.get('span_id')!r}: {type(e).__name__}: {e}")
        table = _build(good)
        return _drop_missing_required(table, dropped)
    return _drop_missing_required(table, [])


def _drop_missing_required(table: pa.Table, dropped: list[str]) -> tuple[pa.Table, list[str]]:
    import pyarrow.compute as pc

    bad = [name for name in COLUMNS if name in REQUIRED and table.column(name).null_count]
    if not bad:
        return table, dropped
    keep = pc.is_valid(table.column(bad[0]))
    for name in bad[1:]:
        keep = pc.and_(keep, pc.is_valid(table.column(name)))
    kept = table.filter(keep)
    dropped.append(f"{table.num_rows - kept.num_rows} row(s) with None in {', '.join(bad)}")
    return kept, dropped


# --- files ----------------------------------------------------------------------------------


def write_part(
    directory: Path, table: pa.Table, compression: str = "zstd", *, fsync: bool = True
) -> Path:
    """Write ``table`` as a new part in ``directory``: temp file, fsync, then atomic rename."""
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{uuid.uuid4().hex}.parquet"
    tmp = directory / f".{name}.tmp"
    try:
        pq.write_table(table, tmp, compression=compression)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return directory / name


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- compaction -----------------------------------------------------------------------------

# Parts are merged into row groups of about this many rows: big enough for fast scans, small
# enough that compaction holds little in memory.
_ROW_GROUP_ROWS = 256_000


@dataclass(frozen=True)
class CompactionResult:
    """What :func:`compact` did.

    Attributes:
        run_id: the run that was compacted.
        parts_before: how many part files the run had (unreadable ones included).
        rows: how many rows the run has: every row of its readable parts.
        path: the run's single part afterwards (``None`` when no readable part was left).
        quarantined: where the unreadable parts were moved (the run's ``quarantine/``).
    """

    run_id: str
    parts_before: int
    rows: int
    path: Path | None
    quarantined: tuple[Path, ...] = ()


def compact(runs_dir: str | os.PathLike[str] | None, run_id: str) -> CompactionResult:
    """Merge a finished run's parts into one file, keeping every row; quarantine bad parts.

    The merged file is written under a temporary name, renamed into place, and only then are
    the old parts deleted. Between that rename and the deletes (milliseconds) a query sees the
    run's rows twice, and a query that listed the old parts just before they were deleted may
    fail with "file not found" and need re-running, so compact runs that are no longer written
    to, when no one is querying them. Parts a live writer adds meanwhile are left alone.

    Every part is read in full; one that cannot be read (truncated, overwritten) is moved to
    ``<run dir>/quarantine/``, where queries do not look, and logged. Parts of schema version
    1 are upgraded (their newer columns become null).

    Args:
        runs_dir: the runs directory; ``None`` means :func:`default_runs_dir`.
        run_id: the run to compact.

    Raises:
        UserError: the run has no traces, or holds parts of a schema version this dspex
            does not know.

    Example:
        >>> import tempfile
        >>> from dspex.traces import compact
        >>> runs = tempfile.mkdtemp()
        >>> (run_dir(runs, "empty-run")).mkdir(parents=True)
        >>> compact(runs, "empty-run").rows
        0
    """
    directory = run_dir(runs_dir, run_id)
    if not directory.is_dir():
        raise UserError(
            f"No traces for run {run_id!r} under {directory.parent}; list the runs with "
            "`dspex traces runs`."
        )
    _remove_stale_temps(directory)
    parts = sorted(directory.glob("*.parquet"))
    bad: dict[Path, str] = {}
    counts: dict[Path, int] = {}
    for part in parts:
        rows, problem = _checked_rows(part)
        if problem is None:
            counts[part] = rows
        else:
            bad[part] = problem
    good = list(counts)
    final = None
    try:
        if len(good) == 1:  # nothing to merge; still read it all, as a merge would
            problem = _unreadable(good[0])
            if problem is not None:
                bad[good[0]] = problem
        elif len(good) > 1:
            final = _merge_into_one(directory, good, counts, bad)
    finally:  # unreadable parts move aside even if the merge failed
        quarantined = tuple(_quarantine(part, reason) for part, reason in bad.items())
    kept = [p for p in good if p not in bad]
    if final is not None:
        for part in kept:
            part.unlink()
    path = final if final is not None else (kept[0] if kept else None)
    return CompactionResult(run_id, len(parts), sum(counts[p] for p in kept), path, quarantined)


def _merge_into_one(
    directory: Path, parts: list[Path], counts: Mapping[Path, int], bad: dict[Path, str]
) -> Path | None:
    """Merge the readable ``parts`` into one new part; adds those that fail to ``bad``."""
    import pyarrow.parquet as pq

    tmp = directory / f".compact-{uuid.uuid4().hex}.parquet.tmp"
    try:
        bad.update(_merge(parts, tmp))
        merged = [p for p in parts if p not in bad]
        expected = sum(counts[p] for p in merged)
        merged_rows = pq.read_metadata(tmp).num_rows
        if merged_rows != expected:  # never delete parts unless every row is in the merge
            raise RuntimeError(f"merged {merged_rows} rows, expected {expected}")
        if len(merged) <= 1:  # the others were unreadable: keep the part as it is
            tmp.unlink()
            return None
        _fsync(tmp)
        final = directory / f"part-{uuid.uuid4().hex}.parquet"
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return final


def _quarantine(part: Path, reason: str) -> Path:
    target = quarantine(part)
    logger.warning("dspex.traces: moved the unreadable part %s to %s (%s)", part, target, reason)
    return target


def _checked_rows(part: Path) -> tuple[int, str | None]:
    """A part's row count from its footer, or what makes it unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(part)
    except (OSError, pa.ArrowException, ValueError) as e:
        return 0, _reason(e)
    version = (meta.metadata or {}).get(SCHEMA_VERSION_KEY.encode())
    if version not in {str(v).encode() for v in READABLE_VERSIONS}:
        raise UserError(
            f"{part} has trace schema version {version!r}, this dspex reads "
            f"{sorted(READABLE_VERSIONS)}; compact it with the dspex version that wrote it."
        )
    return int(meta.num_rows), None


def _unreadable(part: Path) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.read_table(part)
    except (OSError, pa.ArrowException, ValueError) as e:
        return _reason(e)
    return None


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def _merge(parts: Sequence[Path], out: Path) -> dict[Path, str]:
    """Write every readable part to ``out``; returns the unreadable ones with the reason."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = trace_schema()
    pending: list[pa.Table] = []
    pending_rows = 0
    bad: dict[Path, str] = {}
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for part in parts:
            try:  # older versions lack the newer columns: read as null
                table = pq.read_table(part, schema=schema)
            except (OSError, pa.ArrowException, ValueError) as e:
                bad[part] = _reason(e)
                continue
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= _ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
    return bad


def _remove_stale_temps(directory: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_SECONDS
    for tmp in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
