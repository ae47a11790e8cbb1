"""Traces stay honest after faults: damaged parts are skipped with a warning naming them and
quarantined by ``compact``; every retried LM attempt is a row of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

import dspex
from dspex.cli import main
from dspex.errors import DspexError, LMServerError, UserError
from dspex.lm import LM, LMRequest
from dspex.lm._types import RawCompletion
from dspex.testing import Reply, Script, serve
from dspex.traces import (
    CorruptPartWarning,
    TraceReadError,
    TraceWriter,
    compact,
    connect,
    report,
    runs,
    sql,
)
from tests.traces._rows import make_rows

GOOD_ROWS = 30  # rows in the readable parts of the fixture below


def _part_of(runs_dir: Path, run_id: str, rows: list[dict[str, Any]]) -> Path:
    with TraceWriter(runs_dir, run_id, compression="none") as writer:
        for row in rows:
            writer.add(row)
    return max((runs_dir / "traces" / f"run_id={run_id}").glob("*.parquet"), key=os.path.getmtime)


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Run ``ok`` (10 rows) and run ``bad``: 20 readable rows, a part truncated to half its
    bytes and a part of garbage bytes. Returns the runs dir and the two bad parts."""
    _part_of(tmp_path, "ok", make_rows(10))
    _part_of(tmp_path, "bad", make_rows(10, start=10))
    _part_of(tmp_path, "bad", make_rows(10, start=20))
    half = _part_of(tmp_path, "bad", make_rows(10, start=30))
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    garbage = half.with_name("part-garbage.parquet")
    garbage.write_bytes(os.urandom(4096))
    return tmp_path, half, garbage


def _named(record: pytest.WarningsRecorder) -> set[Path]:
    return {w.message.path for w in record if isinstance(w.message, CorruptPartWarning)}


def test_sql_and_reports_answer_from_the_good_parts_and_name_the_bad_ones(
    damaged: tuple[Path, Path, Path],
) -> None:
    runs_dir, half, garbage = damaged
    with pytest.warns(CorruptPartWarning) as record:
        got = sql("SELECT run_id, count(*) AS n FROM traces GROUP BY run_id ORDER BY 1", runs_dir)
    assert got.to_pylist() == [{"run_id": "bad", "n": 20}, {"run_id": "ok", "n": 10}]
    assert _named(record) == {half, garbage}
    assert str(half) in str(record[0].message) + str(record[1].message)
    assert "dspex traces compact bad" in str(record[0].message)

    with pytest.warns(CorruptPartWarning) as record:
        cost = report("cost", runs_dir)
    assert sum(cost.column("calls").to_pylist()) == GOOD_ROWS
    assert _named(record) == {half, garbage}
    with pytest.warns(CorruptPartWarning):
        assert runs(runs_dir).column("rows").to_pylist() == [10, 20]


def test_connect_leaves_out_an_unreadable_part(damaged: tuple[Path, Path, Path]) -> None:
    runs_dir, half, garbage = damaged
    with pytest.warns(CorruptPartWarning) as record:
        con = connect(runs_dir)
    assert con.sql("SELECT count(*) FROM traces").fetchall() == [(GOOD_ROWS,)]
    assert _named(record) == {half, garbage}
    assert {w.filename for w in record} == {__file__}  # points at the caller's code


def _damage_pages(part: Path) -> None:
    """Overwrite the first third of the data pages; the footer stays readable."""
    data = bytearray(part.read_bytes())
    data[4 : len(data) // 3] = b"\xff" * (len(data) // 3 - 4)
    part.write_bytes(bytes(data))


def test_a_part_damaged_inside_its_pages_is_found_and_left_out(tmp_path: Path) -> None:
    _part_of(tmp_path, "r", make_rows(2000))
    damaged = _part_of(tmp_path, "r", make_rows(2000, start=2000))
    _damage_pages(damaged)
    assert pq.read_metadata(damaged).num_rows == 2000  # only the pages are broken
    with pytest.warns(CorruptPartWarning) as record:
        got = sql("SELECT count(*) AS n, max(length(messages)) > 0 AS ok FROM traces", tmp_path)
    assert got.to_pylist() == [{"n": 2000, "ok": True}]
    assert _named(record) == {damaged}
    # compact reads every page too: the damaged part goes to quarantine, the rest is kept
    result = compact(tmp_path, "r")
    assert result.quarantined == (damaged.parent / "quarantine" / damaged.name,)
    assert result.rows == 2000
    assert sql("SELECT count(*) AS n FROM traces", tmp_path).to_pylist() == [{"n": 2000}]


def _cli(*argv: str) -> int:
    return main(["traces", *argv])


def test_the_cli_warns_then_compact_quarantines_the_bad_parts(
    damaged: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    runs_dir, half, garbage = damaged
    assert _cli("report", "cost", "--runs-dir", str(runs_dir), "--format", "json") == 0
    out, err = capsys.readouterr()
    assert '"calls"' in out
    assert f"warning: dspex.traces: skipped the unreadable trace part {half}" in err
    assert str(garbage) in err

    assert _cli("compact", "bad", "--runs-dir", str(runs_dir)) == 0
    out, _ = capsys.readouterr()
    quarantine = half.parent / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == sorted([half.name, garbage.name])
    assert "moved the unreadable part" in out and "merged 2 parts" in out
    assert not half.exists() and not garbage.exists()
    assert len(list(half.parent.glob("*.parquet"))) == 1

    # Later readers do not see the quarantined files: no warning (warnings are errors here).
    got = sql("SELECT count(*) AS n FROM traces WHERE run_id = 'bad'", runs_dir)
    assert got.to_pylist() == [{"n": 20}]
    assert _cli("sql", "SELECT count(*) AS n FROM traces", "--runs-dir", str(runs_dir)) == 0
    assert "warning" not in capsys.readouterr().err


def test_compact_quarantines_a_run_whose_only_part_is_bad(tmp_path: Path) -> None:
    part = _part_of(tmp_path, "r", make_rows(5))
    part.write_bytes(part.read_bytes()[:100])
    result = compact(tmp_path, "r")
    assert (result.rows, result.path) == (0, None)
    assert result.quarantined == (part.parent / "quarantine" / part.name,)
    assert sql("SELECT count(*) AS n FROM traces", tmp_path).to_pylist() == [{"n": 0}]


def test_a_query_that_cannot_be_answered_raises_a_dspex_error(tmp_path: Path) -> None:
    _part_of(tmp_path, "r", make_rows(5))
    with pytest.raises(UserError, match="failed on the data") as info:
        sql("SELECT CAST(model AS INTEGER) FROM traces", tmp_path)
    assert not isinstance(info.value, duckdb.Error)
    # Every part reads fine, so skipping cannot help: a dspex error that says so.
    with pytest.raises(TraceReadError, match="footer and pages read fine") as failed:
        sql("SELECT error('disk on fire') FROM traces", tmp_path)
    assert isinstance(failed.value, DspexError) and not isinstance(failed.value, duckdb.Error)


# --- LM retries -------------------------------------------------------------------------------


class _FailsFirst:
    """A responder that answers with the given faults first, then from a script."""

    latency = 0.0

    def __init__(self, *faults: Reply) -> None:
        self._faults = list(faults)
        self._answers = Script({"": {"answer": "4"}})
        self._requests = 0

    @property
    def request_count(self) -> int:
        return self._requests

    def reply(self, request: LMRequest) -> Reply:
        self._requests += 1
        if self._faults:
            return self._faults.pop(0)
        return self._answers.reply(request)


@pytest.fixture
def fails_twice() -> Iterator[str]:
    faults = (Reply(fault="rate_limit", retry_after=0.0), Reply(fault="server_error"))
    with serve(_FailsFirst(*faults)) as server:
        yield server.url


def _attempt_rows(runs_dir: Path) -> list[dict[str, Any]]:
    return sql(
        "SELECT kind, attempt, status, http_status, error_type, span_id, parent_span_id, "
        "module_path, model FROM traces WHERE kind IN ('lm', 'lm_attempt') ORDER BY attempt",
        runs_dir,
    ).to_pylist()


def test_every_retried_attempt_is_a_row(tmp_path: Path, fails_twice: str) -> None:
    lm = LM("openai/sim", api_base=fails_twice, api_key="x", cache=False, retry_backoff=(0, 0))
    with dspex.traces.record(run_id="retries", runs_dir=tmp_path):
        assert dspex.Predict("question -> answer", lm=lm)(question="2 + 2?").answer == "4"
    lm.close()
    rows = _attempt_rows(tmp_path)
    got = [(r["kind"], r["attempt"], r["status"], r["http_status"], r["error_type"]) for r in rows]
    assert got == [
        ("lm_attempt", 1, "retried", 429, "LMRateLimitError"),
        ("lm_attempt", 2, "retried", 500, "LMServerError"),
        ("lm", 3, "ok", None, None),
    ]
    call = rows[2]["span_id"]
    assert [r["parent_span_id"] for r in rows[:2]] == [call, call]
    assert {r["module_path"] for r in rows} == {"self"} and {r["model"] for r in rows} == {
        "openai/sim"
    }
    # The reports count the call once, and the retries apart from the errors.
    assert report("cost", tmp_path).column("calls").to_pylist() == [1]
    [run] = runs(tmp_path).to_pylist()
    assert (run["lm_calls"], run["errors"], run["retries"]) == (1, 0, 2)


def test_a_call_that_gives_up_ends_with_its_last_attempt(tmp_path: Path, fails_twice: str) -> None:
    lm = LM("openai/sim", api_base=fails_twice, cache=False, num_retries=1, retry_backoff=(0, 0))
    with dspex.traces.record(run_id="gave-up", runs_dir=tmp_path), pytest.raises(LMServerError):
        lm("2 + 2?")
    lm.close()
    got = [
        (r["kind"], r["attempt"], r["status"], r["http_status"]) for r in _attempt_rows(tmp_path)
    ]
    assert got == [("lm_attempt", 1, "retried", 429), ("lm", 2, "error", 500)]


SECRET = "sk-live-attempt-row-secret-0123456789"


class _EchoesTheKey:
    """A transport whose first attempt fails with the key in the provider's error text."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        self.calls += 1
        if self.calls == 1:
            raise LMServerError(f"upstream rejected key={SECRET}", status=502)
        return RawCompletion(["[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"], 5, 5, ["stop"])

    async def aclose(self) -> None:
        return None


def test_attempt_rows_keep_secrets_redacted(tmp_path: Path) -> None:
    lm = LM("openai/sim", api_key=SECRET, transport=_EchoesTheKey(), cache=False)
    lm = lm.copy(retry_backoff=(0, 0))
    with dspex.traces.record(run_id="secret", runs_dir=tmp_path):
        dspex.Predict("question -> answer", lm=lm)(question="2 + 2?")
    [row] = sql(
        "SELECT error_message, http_status FROM traces WHERE kind = 'lm_attempt'", tmp_path
    ).to_pylist()
    assert "[REDACTED]" in row["error_message"] and row["http_status"] == 502
    for part in (tmp_path / "traces").rglob("*.parquet"):
        assert SECRET.encode() not in part.read_bytes()


def test_old_parts_without_the_attempt_columns_still_read(tmp_path: Path) -> None:
    part = _part_of(tmp_path, "old", make_rows(3))
    table = pq.read_table(part).drop_columns(["attempt", "status", "http_status"])
    pq.write_table(
        table.replace_schema_metadata({b"dspex.trace_schema_version": b"1"}), part
    )  # as schema version 1 wrote it
    got = sql("SELECT count(*) AS n, count(attempt) AS attempts FROM traces", tmp_path)
    assert got.to_pylist() == [{"n": 3, "attempts": 0}]
    _part_of(tmp_path, "old", make_rows(2, start=3))
    assert compact(tmp_path, "old").rows == 5
    [merged] = (tmp_path / "traces" / "run_id=old").glob("*.parquet")
    attempts = pq.read_table(merged).column("attempt").to_pylist()
    assert sorted(attempts, key=str) == [1, 1, None, None, None]
