"""Trace storage and reports at scale: 1,000,000 synthetic rows, then every named report.

Rows are generated with numpy and pyarrow (no Python loop per row) with realistic shapes:
~20 runs, 5 stages, 10 module paths, 3 models, 15% module rows, 30% cache hits, 2% errors,
log-normal tokens and latencies, and JSON text columns drawn from a pool of prompts. They are
written as parts of ``--part-rows`` rows (the writer's default flush size) under a temporary
runs dir, exactly as :class:`dspex.traces.TraceWriter` lays them out. Then each report runs
``--repeat`` times; the table shows the best and median wall time.

It also measures the writer itself: the cost of ``TraceWriter.add`` on the LM hot path, and
how many rows per second the background thread converts and writes.

Usage::

    python benchmarks/trace_reports.py                  # 1M rows, 200 parts
    python benchmarks/trace_reports.py --rows 200000 --compact
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dspex.traces import TraceWriter, compact, report, runs, trace_schema
from dspex.traces._store import run_dir, write_part

STAGES = np.array(["bootstrap", "propose", "search", "eval", "finetune"])
MODULES = np.array([f"{m}.predict" for m in ("draft", "refine", "answer", "critic", "plan")] * 2)
MODULES[5:] = [f"hop{i}.generate" for i in range(5)]
MODELS = np.array(["openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3-5-haiku"])
PRICES = np.array([[0.15e-6, 0.6e-6], [2.5e-6, 10e-6], [0.8e-6, 4e-6]])  # USD/token in, out
ERRORS = np.array(["LMRateLimitError", "ParseError", "LMTimeoutError", "LMServerError"])


def _pick(rng: np.random.Generator, values: np.ndarray, n: int, p: Any = None) -> np.ndarray:
    return values[rng.choice(len(values), size=n, p=p)]


def _text_pool(rng: np.random.Generator, size: int, mean_chars: int, kind: str) -> pa.Array:
    words = np.array(["the", "of", "question", "answer", "reason", "step", "context", "passage"])
    pool = []
    for i in range(size):
        n = max(4, int(rng.normal(mean_chars / 7, mean_chars / 28)))
        body = " ".join(_pick(rng, words, n))
        pool.append(f'[{{"role": "user", "content": "{kind} {i}: {body}"}}]')
    return pa.array(pool, pa.string())


def _ids(prefix: str, start: int, n: int) -> pa.Array:
    numbers = pa.array(np.arange(start, start + n)).cast(pa.string())
    return pc.binary_join_element_wise(prefix, numbers, "")


def _labels(stage: np.ndarray, trial: pa.Array) -> pa.MapArray:
    has_trial = trial.is_valid().to_numpy(zero_copy_only=False)
    counts = 1 + has_trial.astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    keys = np.empty(offsets[-1], dtype=object)
    values = np.empty(offsets[-1], dtype=object)
    keys[offsets[:-1]] = "stage"
    values[offsets[:-1]] = stage
    second = offsets[:-1][has_trial] + 1
    keys[second] = "trial"
    values[second] = np.asarray(trial.to_pylist(), dtype=object)[has_trial].astype(str)
    return pa.MapArray.from_arrays(
        pa.array(offsets), pa.array(keys, pa.string()), pa.array(values, pa.string())
    )


def synthetic_part(
    rng: np.random.Generator, n: int, first: int, t0: float, pools: dict[str, pa.Array]
) -> pa.Table:
    """``n`` rows with the trace schema; row ids start at ``first``, times at ``t0``."""
    stage = _pick(rng, STAGES, n, p=[0.25, 0.1, 0.35, 0.25, 0.05])
    trial = pa.array(rng.integers(0, 50, n), mask=np.isin(stage, ["bootstrap", "eval"]))
    lm = rng.random(n) < 0.85
    cache_hit = lm & (rng.random(n) < 0.30)
    model_ix = rng.choice(len(MODELS), n, p=[0.7, 0.2, 0.1])
    prompt = np.round(rng.lognormal(6.7, 0.6, n)).astype(np.int64)
    completion = np.round(rng.lognormal(4.8, 0.7, n)).astype(np.int64)
    cost = prompt * PRICES[model_ix, 0] + completion * PRICES[model_ix, 1]
    unknown_cost = cache_hit | (rng.random(n) < 0.02)
    latency = np.where(cache_hit, rng.uniform(0.2, 2.0, n), rng.lognormal(6.4, 0.5, n))
    failed = rng.random(n) < 0.02
    started = t0 + np.cumsum(rng.exponential(0.05, n))
    ended = started + latency / 1000
    module = _pick(rng, MODULES, n)
    text = {
        k: pa.DictionaryArray.from_arrays(rng.integers(0, len(p), n), p) for k, p in pools.items()
    }
    ts = pa.timestamp("us", tz="UTC")
    columns: dict[str, Any] = {
        "span_id": _ids("span-", first, n),
        "parent_span_id": _ids("span-", max(first - 1, 0), n),
        "kind": np.where(lm, "lm", "module"),
        "stage": stage,
        "trial": trial,
        "labels": _labels(stage, trial),
        "module_path": module,
        "module_class": np.where(lm, "Predict", "ChainOfThought"),
        "predictor": module,
        "signature": "QA(question -> answer)",
        "model": pa.array(MODELS[model_ix], mask=~lm),
        "inputs": text["inputs"].cast(pa.string()),
        "messages": text["messages"].cast(pa.string()),
        "response": text["response"].cast(pa.string()),
        "outputs": text["outputs"].cast(pa.string()),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost": pa.array(cost, mask=unknown_cost),
        "latency_ms": latency,
        "cache_hit": cache_hit,
        "rollout_id": pa.nulls(n, pa.string()),
        "attempt": pa.array(np.ones(n, np.int64), mask=~lm),
        "status": np.where(failed, "error", "ok"),
        "http_status": pa.nulls(n, pa.int64()),
        "error_type": pa.array(_pick(rng, ERRORS, n), mask=~failed),
        "error_message": pa.array(np.full(n, "provider said: try again later"), mask=~failed),
        "started_at": pa.array((started * 1e6).astype(np.int64)).cast(ts),
        "ended_at": pa.array((ended * 1e6).astype(np.int64)).cast(ts),
    }
    schema = trace_schema()
    arrays = [
        columns[f.name]
        if isinstance(columns[f.name], pa.Array)
        else pa.array(np.broadcast_to(columns[f.name], n), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays([a.cast(f.type) for a, f in zip(arrays, schema)], schema=schema)


def generate(runs_dir: Path, rows: int, n_runs: int, part_rows: int, seed: int) -> int:
    """Write ``rows`` rows as ``n_runs`` runs of ``part_rows``-row parts; return the parts."""
    rng = np.random.default_rng(seed)
    pools = {
        "messages": _text_pool(rng, 2000, 1200, "messages"),
        "inputs": _text_pool(rng, 2000, 150, "inputs"),
        "response": _text_pool(rng, 2000, 300, "response"),
        "outputs": _text_pool(rng, 2000, 80, "outputs"),
    }
    per_run = rows // n_runs
    parts = 0
    for r in range(n_runs):
        directory = run_dir(runs_dir, f"bench-{r:02d}")
        t0 = 1_717_200_000.0 + r * 86_400
        for first in range(0, per_run, part_rows):
            n = min(part_rows, per_run - first)
            table = synthetic_part(rng, n, r * per_run + first, t0 + first * 0.05, pools)
            write_part(directory, table, fsync=False)
            parts += 1
    return parts


def _time(fn: Callable[[], Any], repeat: int) -> tuple[float, float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn().num_rows
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), rows


def _writer_numbers(runs_dir: Path, n: int) -> tuple[float, float]:
    """ns per ``TraceWriter.add`` call, and rows/s that its flush converts and writes."""
    now = time.time()
    template = dict(
        parent_span_id="m-1", kind="lm", stage="search", module_path="draft.predict",
        module_class="Predict", predictor="draft.predict", signature="QA(question -> answer)",
        model="openai/gpt-4o-mini", inputs='{"question": "What is 2 + 2?"}',
        messages='[{"role": "user", "content": "' + "context " * 150 + '"}]',
        response='["[[ ## answer ## ]]\\n4"]', outputs='{"answer": "4"}', prompt_tokens=812,
        completion_tokens=40, cost=0.00015, latency_ms=640.0, cache_hit=False, rollout_id=None,
        error_type=None, error_message=None, started_at=now - 0.64, ended_at=now,
    )  # fmt: skip
    rows = [
        {**template, "span_id": f"w-{i}", "trial": i % 50, "labels": {"trial": str(i % 50)}}
        for i in range(n)
    ]
    writer = TraceWriter(runs_dir, "writer-bench", flush_rows=n + 1, flush_seconds=3600)
    start = time.perf_counter()
    for row in rows:
        writer.add(row)
    add_ns = (time.perf_counter() - start) / n * 1e9
    start = time.perf_counter()
    writer.close()
    return add_ns, n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--part-rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compact", action="store_true", help="also time after compaction")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        start = time.perf_counter()
        parts = generate(runs_dir, args.rows, args.runs, args.part_rows, args.seed)
        size = sum(p.stat().st_size for p in runs_dir.rglob("*.parquet"))
        console.print(
            f"wrote {args.rows:,} rows in {parts} parts ({size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - start:.1f} s"
        )
        table = Table(title=f"trace reports over {args.rows:,} rows")
        for col in ("query", "layout", "result rows", "best s", "median s"):
            table.add_column(col, justify="left" if col in ("query", "layout") else "right")
        layouts = [f"{parts} parts"]
        for layout in layouts + (["compacted"] if args.compact else []):
            if layout == "compacted":
                for r in range(args.runs):
                    compact(runs_dir, f"bench-{r:02d}")
            queries: dict[str, Callable[[], Any]] = {
                f"report('{name}')": functools.partial(report, name, runs_dir)
                for name in ("cost", "latency", "errors", "cache")
            }
            queries["report('cost', run_id=...)"] = functools.partial(
                report, "cost", runs_dir, run_id="bench-07"
            )
            queries["runs()"] = functools.partial(runs, runs_dir)
            for name, fn in queries.items():
                best, median, n = _time(fn, args.repeat)
                table.add_row(name, layout, f"{n:,}", f"{best:.3f}", f"{median:.3f}")
        console.print(table)
        add_ns, rows_per_s = _writer_numbers(runs_dir, 50_000)
        console.print(
            f"TraceWriter: add() {add_ns:.0f} ns/row on the caller's thread; background "
            f"conversion + redaction + write {rows_per_s:,.0f} rows/s (1.2 kB messages)"
        )


if __name__ == "__main__":
    main()
