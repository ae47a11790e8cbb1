"""The named reports compute what the rows say."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from dspex.errors import UserError
from dspex.traces import REPORTS, TraceWriter, report, runs
from tests.traces._rows import make_row, make_rows


@pytest.fixture
def rows(tmp_path: Path) -> list[dict[str, Any]]:
    """Two runs of LM rows, a few module rows, and some errors."""
    written = []
    for run_id, start in (("run-a", 0), ("run-b", 1000)):
        batch = make_rows(120, start=start)
        batch += [
            make_row(
                start + 500 + i,
                kind="module",
                model=None,
                module_class="ChainOfThought",
                module_path="draft",
                prompt_tokens=100,
                completion_tokens=10,
                cost=0.5,
            )
            for i in range(6)
        ]
        batch[3] = {**batch[3], "error_type": "LMRateLimitError", "error_message": "slow down"}
        batch[7] = {**batch[7], "error_type": "ParseError", "error_message": "no answer"}
        batch[-1] = {**batch[-1], "error_type": "ParseError", "error_message": "module failed"}
        with TraceWriter(tmp_path, run_id, flush_rows=50) as writer:
            for row in batch:
                writer.add(row)
        written += [{**row, "run_id": run_id} for row in batch]
    return written


def _by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


def test_cost_report_sums_equal_the_rows_written(
    tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    table = report("cost", tmp_path)
    lm = [r for r in rows if r["kind"] == "lm"]
    expected = _by(lm, "run_id", "stage", "module_path")
    got = {(r["run_id"], r["stage"], r["module_path"]): r for r in table.to_pylist()}
    assert set(got) == set(expected)
    for key, group in expected.items():
        g = got[key]
        assert g["calls"] == len(group)
        assert g["cache_hits"] == sum(r["cache_hit"] for r in group)
        assert g["prompt_tokens"] == sum(r["prompt_tokens"] for r in group)
        assert g["completion_tokens"] == sum(r["completion_tokens"] for r in group)
        assert g["cost"] == pytest.approx(sum(r["cost"] or 0 for r in group))
        assert g["calls_cost_unknown"] == 0  # the synthetic rows price every cache miss
    total = sum(r["cost"] or 0 for r in lm)
    assert sum(table.column("cost").to_pylist()) == pytest.approx(total)


def test_filters_by_run_and_stage(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    table = report("cost", tmp_path, run_id="run-b", stage="eval")
    assert set(table.column("run_id").to_pylist()) == {"run-b"}
    assert set(table.column("stage").to_pylist()) == {"eval"}
    expected = [r for r in rows if (r["run_id"], r["stage"], r["kind"]) == ("run-b", "eval", "lm")]
    assert sum(table.column("calls").to_pylist()) == len(expected)
    assert report("cost", tmp_path, run_id="x' OR '1'='1").num_rows == 0


def test_latency_percentiles_skip_cache_hits(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    table = report("latency", tmp_path, run_id="run-a")
    misses = [r for r in rows if r["run_id"] == "run-a" and r["kind"] == "lm"]
    misses = [r for r in misses if not r["cache_hit"]]
    expected = _by(misses, "stage", "model")
    got = {(r["stage"], r["model"]): r for r in table.to_pylist()}
    assert set(got) == set(expected)
    for key, group in expected.items():
        latencies = sorted(r["latency_ms"] for r in group)
        assert got[key]["calls"] == len(group)
        assert got[key]["p50_ms"] == pytest.approx(statistics.median(latencies))
        assert got[key]["mean_ms"] == pytest.approx(statistics.fmean(latencies))
        assert got[key]["max_ms"] == max(latencies)
        assert got[key]["p50_ms"] <= got[key]["p90_ms"] <= got[key]["p99_ms"] <= max(latencies)


def test_errors_report_counts_by_kind_and_type(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    got = report("errors", tmp_path, run_id="run-a").to_pylist()
    failed = [r for r in rows if r["run_id"] == "run-a" and r["error_type"]]
    expected = {k: len(v) for k, v in _by(failed, "stage", "kind", "error_type").items()}
    assert {(r["stage"], r["kind"], r["error_type"]): r["errors"] for r in got} == expected
    assert {r["first_message"] for r in got} == {"slow down", "no answer", "module failed"}


def test_cache_report_hit_rate(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    got = report("cache", tmp_path).to_pylist()
    lm = [r for r in rows if r["kind"] == "lm"]
    for r in got:
        group = [x for x in lm if (x["run_id"], x["stage"]) == (r["run_id"], r["stage"])]
        hits = sum(x["cache_hit"] for x in group)
        assert (r["calls"], r["cache_hits"]) == (len(group), hits)
        assert r["hit_rate"] == pytest.approx(hits / len(group))
    assert len(got) == 2 * 4


def test_runs_lists_each_run_with_its_span(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    got = runs(tmp_path).to_pylist()
    assert [r["run_id"] for r in got] == ["run-a", "run-b"]
    assert [r["rows"] for r in got] == [126, 126]
    assert [r["lm_calls"] for r in got] == [120, 120]
    assert [r["errors"] for r in got] == [3, 3]
    for r in got:  # module rows repeat their LM calls' cost: only LM rows count
        lm_cost = sum(
            x["cost"] or 0 for x in rows if (x["run_id"], x["kind"]) == (r["run_id"], "lm")
        )
        assert r["cost"] == pytest.approx(lm_cost)
    assert all(r["started_at"] < r["ended_at"] for r in got)


def test_every_report_runs_on_an_empty_runs_dir(tmp_path: Path) -> None:
    for name in REPORTS:
        assert report(name, tmp_path / "empty").num_rows == 0
    assert runs(tmp_path / "empty").num_rows == 0


def test_an_unknown_report_lists_the_names(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cost, latency, errors, cache"):
        report("spend", tmp_path)
