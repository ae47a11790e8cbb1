"""``dspex traces``: sql, report, runs and compact from the command line."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import pytest

from dspex.cli import _traces
from dspex.traces import TraceWriter
from tests.traces._rows import make_rows


def _cli(*argv: str) -> int:
    """Parse and run like ``dspex traces ...``; through dspex.cli.main once it is wired."""
    from dspex.cli import _main

    if "traces" in _main._parser().format_help():
        return _main.main(["traces", *argv])
    parser = argparse.ArgumentParser(prog="dspex")
    _traces.add_parser(parser.add_subparsers(dest="command"))
    return _traces.run(parser.parse_args(["traces", *argv]))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    with TraceWriter(tmp_path, "nightly-1", flush_rows=10) as writer:
        for i, row in enumerate(make_rows(40)):
            writer.add(row)
            if i % 10 == 9:
                writer.flush()
    return tmp_path


def test_sql_prints_a_table(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _cli(
        "sql",
        "SELECT stage, count(*) AS calls FROM traces GROUP BY stage ORDER BY stage",
        "--runs-dir",
        str(runs),
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "stage" in out and "calls" in out and "bootstrap" in out and "4 row(s)" in out


def test_sql_as_csv_and_json(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT span_id, labels, cost FROM traces ORDER BY started_at LIMIT 3"
    assert _cli("sql", query, "--runs-dir", str(runs), "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["span_id"] for r in rows] == ["span-0", "span-1", "span-2"]
    assert json.loads(rows[0]["labels"]) == {"stage": "bootstrap", "trial": "0"}
    assert _cli("sql", query, "--runs-dir", str(runs), "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data[1]["labels"] == {"stage": "propose", "trial": "1"}


def test_a_bad_query_exits_2_with_a_message_and_no_traceback(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("sql", "SELECT nope FROM traces", "--runs-dir", str(runs)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and "Traceback" not in err
    assert _cli("sql", "SELECT 'abc'::INTEGER AS n") == 2  # a runtime error, not a binder one
    assert "Conversion Error" in capsys.readouterr().err


def test_reports_and_runs(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("cost", "latency", "errors", "cache"):
        assert _cli("report", name, "--runs-dir", str(runs), "--stage", "eval") == 0
        assert f"{name} report" in capsys.readouterr().out
    assert _cli("runs", "--runs-dir", str(runs)) == 0
    out = capsys.readouterr().out
    assert "nightly-1" in out and "40" in out


def test_compact(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("compact", "nightly-1", "--runs-dir", str(runs)) == 0
    assert "merged 4 parts" in capsys.readouterr().out
    assert _cli("compact", "nope", "--runs-dir", str(runs)) == 2
    assert "dspex traces runs" in capsys.readouterr().err


def test_the_default_runs_dir_comes_from_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with TraceWriter(None, "env-run") as writer:
        writer.add(make_rows(1)[0])
    assert _cli("runs", "--format", "json") == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == ["env-run"]
