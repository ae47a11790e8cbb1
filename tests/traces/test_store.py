"""TraceWriter: flushing, crash safety, redaction, validation; compaction."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dspex._redact import register_secret
from dspex.errors import UserError
from dspex.traces import SCHEMA_VERSION, TraceWriter, compact, connect, sql, trace_schema
from tests.traces._rows import T0, make_row, make_rows

REPO = Path(__file__).resolve().parents[2]


def _parts(runs: Path, run_id: str = "r1") -> list[Path]:
    return sorted((runs / "traces" / f"run_id={run_id}").glob("*.parquet"))


def _rows_on_disk(runs: Path, run_id: str = "r1") -> int:
    return sum(pq.read_metadata(p).num_rows for p in _parts(runs, run_id))


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_rows_round_trip_with_schema_and_version_metadata(tmp_path: Path) -> None:
    rows = make_rows(10)
    with TraceWriter(tmp_path, "r1") as writer:
        for row in rows:
            writer.add(row)
    [part] = _parts(tmp_path)
    meta = pq.read_metadata(part).metadata
    assert meta[b"dspex.trace_schema_version"] == str(SCHEMA_VERSION).encode()
    table = pq.read_table(part)
    assert table.schema.equals(trace_schema(), check_metadata=False)
    got = sorted(table.to_pylist(), key=lambda r: int(r["span_id"].split("-")[1]))
    assert [r["span_id"] for r in got] == [r["span_id"] for r in rows]
    assert got[3]["labels"] == [("stage", "eval"), ("trial", "3")]
    assert got[3]["started_at"] == datetime.fromtimestamp(T0 + 3, UTC)
    assert writer.rows_written == 10 and writer.parts_written == 1 and writer.dropped_rows == 0


def test_flush_by_size_without_waiting_for_the_timer(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, "r1", flush_rows=10, flush_seconds=60)
    for row in make_rows(25):
        writer.add(row)
    _wait_for(lambda: _rows_on_disk(tmp_path) >= 10)
    assert not writer.closed
    writer.close()
    assert _rows_on_disk(tmp_path) == 25


def test_flush_by_time(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, "r1", flush_rows=1000, flush_seconds=0.05)
    for row in make_rows(3):
        writer.add(row)
    _wait_for(lambda: _rows_on_disk(tmp_path) == 3, timeout=5)
    writer.close()
    assert _rows_on_disk(tmp_path) == 3


def test_flush_waits_and_close_is_idempotent(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, "r1", flush_rows=1000, flush_seconds=60)
    writer.add(make_row(0))
    writer.flush()
    assert _rows_on_disk(tmp_path) == 1
    writer.flush()  # nothing pending: no empty part
    assert len(_parts(tmp_path)) == 1
    writer.close()
    writer.close()
    with pytest.raises(UserError, match="closed"):
        writer.add(make_row(1))


def test_concurrent_adds_from_threads_all_land(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, "r1", flush_rows=37, flush_seconds=0.01)

    def add(start: int) -> None:
        for row in make_rows(500, start=start):
            writer.add(row)

    threads = [threading.Thread(target=add, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert sql("SELECT count(DISTINCT span_id) AS n FROM traces", tmp_path).to_pylist() == [
        {"n": 2000}
    ]


def test_no_temp_file_is_left_and_parts_are_renamed_into_place(tmp_path: Path) -> None:
    with TraceWriter(tmp_path, "r1", flush_rows=5) as writer:
        for row in make_rows(23):
            writer.add(row)
    directory = tmp_path / "traces" / "run_id=r1"
    assert not list(directory.glob("*.tmp")) and not list(directory.glob(".*"))
    assert all(p.name.startswith("part-") for p in _parts(tmp_path))


def test_a_reader_never_errors_while_parts_are_written(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, "r1", flush_rows=20, flush_seconds=0.005, fsync=False)
    writer.add(make_row(0))
    writer.flush()  # the view is over files from the first part on
    done = threading.Event()

    def write() -> None:
        for row in make_rows(3000, start=1):
            writer.add(row)
            if row["trial"] == 0:
                time.sleep(0.0005)
        writer.close()
        done.set()

    thread = threading.Thread(target=write)
    con = connect(tmp_path)
    thread.start()
    counts = []
    while not done.is_set():
        counts.append(con.sql("SELECT count(*), sum(prompt_tokens) FROM traces").fetchall()[0][0])
    thread.join()
    counts.append(con.sql("SELECT count(*) FROM traces").fetchall()[0][0])
    assert counts == sorted(counts), "a reader saw rows disappear"
    assert counts[-1] == 3001
    assert len(counts) > 2


_KILLED_WRITER = """
import sys, time
from dspex.traces import TraceWriter
from tests.traces._rows import make_row
writer = TraceWriter(sys.argv[1], "killed", flush_rows=25, flush_seconds=0.01)
i = 0
while True:
    writer.add(make_row(i, messages="x" * 2000))
    i += 1
    if i % 25 == 0:
        time.sleep(0.001)
"""


def test_sigkill_mid_run_leaves_a_readable_directory(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], cwd=REPO)
    try:
        _wait_for(lambda: len(_parts(tmp_path, "killed")) >= 8, timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    on_disk = _rows_on_disk(tmp_path, "killed")
    got = sql(
        "SELECT count(*) AS n, count(DISTINCT span_id) AS d FROM traces WHERE run_id = 'killed'",
        tmp_path,
    ).to_pylist()
    # Parts are whole batches: every renamed part reads, and holds distinct rows.
    assert got == [{"n": on_disk, "d": on_disk}]
    assert on_disk >= 8 * 25


def test_registered_secrets_never_reach_the_files(tmp_path: Path) -> None:
    registered = "hunter2-SENTINEL-5f1c9a"  # not key-shaped: only registration redacts it
    key_shaped = "sk-test-SENTINEL-0123456789abcdef"
    register_secret(registered)
    register_secret(key_shaped)
    leak = f"my key is {key_shaped} and {registered}"
    with TraceWriter(tmp_path, "r1", compression="none") as writer:
        writer.add(
            make_row(
                0,
                messages=f'[{{"role": "user", "content": "{leak}"}}]',
                inputs={"question": leak},  # not yet JSON: encoded, then redacted
                response=[leak],
                outputs=f'{{"answer": "{leak}"}}',
                error_type="LMAuthError",
                error_message=leak,
            )
        )
    data = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"SENTINEL" not in data
    row = sql("SELECT * FROM traces", tmp_path).to_pylist()[0]
    for column in ("messages", "inputs", "response", "outputs", "error_message"):
        assert "[REDACTED]" in row[column], column


def test_invalid_rows_are_dropped_and_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = TraceWriter(tmp_path, "r1")
    writer.add(make_row(0))
    writer.add(make_row(1, prompt_tokens="many"))  # wrong type
    writer.add(make_row(2, span_id=None))  # a required column is None
    writer.add(make_row(5, kind=None, cache_hit=None))
    writer.add(make_row(3, started_at="yesterday"))
    writer.add(make_row(4))
    with caplog.at_level(logging.ERROR, logger="dspex.traces"):
        writer.close()
    assert writer.rows_written == 2 and writer.dropped_rows == 4
    assert "dropped 4 invalid trace row(s)" in caplog.text


def test_timestamps_as_floats_aware_or_naive_datetimes_and_labels_as_pairs(
    tmp_path: Path,
) -> None:
    when = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with TraceWriter(tmp_path, "r1") as writer:
        writer.add(make_row(0, started_at=when.timestamp(), labels=[("stage", "a")]))
        writer.add(make_row(1, started_at=when, labels=None))
        writer.add(make_row(2, started_at=when.replace(tzinfo=None), labels={"trial": 3}))
    got = sql("SELECT started_at, labels FROM traces ORDER BY span_id", tmp_path).to_pylist()
    assert [r["started_at"] for r in got] == [when] * 3
    assert [r["labels"] for r in got] == [[("stage", "a")], [], [("trial", "3")]]


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "..", "run id", "x" * 201])
def test_run_ids_that_are_not_safe_directory_names_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UserError, match="Invalid run id"):
        TraceWriter(tmp_path, bad)


def test_default_runs_dir_is_the_environment_variable(tmp_path: Path) -> None:
    with TraceWriter(None, "r1") as writer:
        writer.add(make_row(0))
    assert _rows_on_disk(tmp_path / "runs") == 1  # the conftest's DSPEX_RUNS_DIR


def test_compaction_keeps_every_row_in_one_file(tmp_path: Path) -> None:
    with TraceWriter(tmp_path, "r1") as writer:
        for row in make_rows(100):
            writer.add(row)
            if row["trial"] == 0:
                writer.flush()
    with TraceWriter(tmp_path, "other") as writer:
        writer.add(make_row(1000))
    stale = tmp_path / "traces" / "run_id=r1" / ".part-dead.parquet.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    query = "SELECT count(*) AS n, sum(cost) AS c, sum(prompt_tokens) AS p FROM traces "
    before = sql(query + "WHERE run_id = 'r1'", tmp_path).to_pylist()
    parts = len(_parts(tmp_path))

    result = compact(tmp_path, "r1")

    assert (result.parts_before, result.rows) == (parts, 100) and parts > 1
    assert _parts(tmp_path) == [result.path]
    assert not stale.exists()
    [after] = sql(query + "WHERE run_id = 'r1'", tmp_path).to_pylist()
    assert after == {**before[0], "c": pytest.approx(before[0]["c"])}
    assert sql(query + "WHERE run_id = 'other'", tmp_path).to_pylist()[0]["n"] == 1
    assert compact(tmp_path, "r1").parts_before == 1  # already compact: a no-op


def test_compacting_an_unknown_run_says_how_to_list_runs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dspex traces runs"):
        compact(tmp_path, "nope")


def test_a_failed_write_is_logged_and_the_writer_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "traces").write_text("not a directory")
    writer = TraceWriter(tmp_path, "r1", flush_rows=1, flush_seconds=0.01)
    with caplog.at_level(logging.ERROR, logger="dspex.traces"):
        writer.add(make_row(0))
        _wait_for(lambda: writer.dropped_rows == 1)
    assert "could not write 1 trace row(s)" in caplog.text
    (tmp_path / "traces").unlink()
    writer.add(make_row(1))
    _wait_for(lambda: writer.rows_written == 1)  # the background thread survived
    writer.close()
    assert writer.rows_written == 1
    (tmp_path / "traces").rename(tmp_path / "moved")
    (tmp_path / "traces").write_text("not a directory again")
    with TraceWriter(tmp_path, "r1", flush_seconds=60) as other:
        other.add(make_row(2))
        with pytest.raises(OSError):
            other.flush()  # an explicit flush (or close) raises instead
