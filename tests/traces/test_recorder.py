"""The recorder: one row per LM call and per module call, labelled, durable and secret-free."""

import contextvars
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import dspex
from dspex.datasets import load_task
from dspex.lm import LM, register_price
from dspex.testing import DummyLM, SimulatedLM, serve

SENTINEL = "sk-test-SENTINEL-trace-987654321"


def _metric(example, prediction, trace=None):  # type: ignore[no-untyped-def]
    return example.answer == prediction.answer


def test_rows_for_lm_and_module_calls_with_paths_outputs_and_parse_errors(tmp_path: Path) -> None:
    class Program(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.solve = dspex.ChainOfThought("question -> answer: int")

        def forward(self, question: str) -> dspex.Prediction:
            return self.solve(question=question)

    lm = DummyLM(
        ["[[ ## reasoning ## ]]\nr\n\n[[ ## answer ## ]]\nseven", '{"reasoning": "r", "answer": 7}']
    )
    with dspex.traces.record(run_id="paths", runs_dir=tmp_path), dspex.context(lm=lm):
        assert Program()(question="3+4?").answer == 7
    rows = dspex.traces.sql(
        "SELECT kind, module_path, module_class, predictor, signature, outputs, error_type, "
        "parent_span_id, span_id FROM traces ORDER BY started_at, kind",
        tmp_path,
    ).to_pylist()
    modules = {r["module_path"]: r for r in rows if r["kind"] == "module"}
    assert set(modules) == {"self", "solve", "solve.predict"}
    assert modules["solve.predict"]["signature"].endswith("(question -> reasoning, answer)")
    lm_rows = [r for r in rows if r["kind"] == "lm"]
    assert len(lm_rows) == 2  # the first answer and the JSON re-ask
    first, second = lm_rows
    assert first["error_type"] == "ParseError" and first["outputs"] is None
    assert second["error_type"] is None
    assert json.loads(second["outputs"]) == [{"reasoning": "r", "answer": 7}]
    assert {r["predictor"] for r in lm_rows} == {"solve.predict"}
    assert {r["parent_span_id"] for r in lm_rows} == {modules["solve.predict"]["span_id"]}
    assert modules["solve.predict"]["parent_span_id"] == modules["solve"]["span_id"]


def test_concurrent_evaluations_land_with_their_own_labels(tmp_path: Path) -> None:
    task = load_task("arithmetic")
    dev = task.split(train=0, dev=30, seed=2).dev
    lm = SimulatedLM(task=task, cache=False)

    def run(stage: str) -> None:
        with dspex.context(labels={"stage": stage, "trial": len(stage)}):
            dspex.Evaluate(devset=dev, metric=_metric, concurrency=8, progress=False)(
                dspex.Predict("question -> answer: int", lm=lm)
            )

    with dspex.traces.record(run_id="labels", runs_dir=tmp_path):
        # Threads do not inherit contextvars; a thread started with a copy of the context
        # records into this run (Prefect's task runner and asyncio.to_thread do this).
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(run, s))
            for s in ("alpha", "beta-two")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    counts = dspex.traces.sql(
        "SELECT stage, trial, kind, count(*) AS n FROM traces GROUP BY ALL ORDER BY ALL", tmp_path
    ).to_pylist()
    assert counts == [
        {"stage": "alpha", "trial": 5, "kind": "lm", "n": 30},
        {"stage": "alpha", "trial": 5, "kind": "module", "n": 30},
        {"stage": "beta-two", "trial": 8, "kind": "lm", "n": 30},
        {"stage": "beta-two", "trial": 8, "kind": "module", "n": 30},
    ]
    # Each LM row sits under a module row of its own stage.
    mixed = dspex.traces.sql(
        "SELECT count(*) AS n FROM traces l JOIN traces m ON l.parent_span_id = m.span_id "
        "WHERE l.kind = 'lm' AND l.stage != m.stage",
        tmp_path,
    ).to_pylist()
    assert mixed == [{"n": 0}]


def test_cost_report_sums_match_per_call_usage(tmp_path: Path) -> None:
    task = load_task("arithmetic")
    dev = task.split(train=0, dev=20, seed=3).dev
    lm = SimulatedLM(task=task)
    register_price(lm.model, input_per_million=150.0, output_per_million=600.0)
    program = dspex.Predict("question -> answer: int", lm=lm)
    evaluate = dspex.Evaluate(devset=dev, metric=_metric, concurrency=4, progress=False)
    with dspex.traces.record(run_id="cost", runs_dir=tmp_path), dspex.track_usage() as usage:
        with dspex.context(labels={"stage": "first"}):
            evaluate(program)
        with dspex.context(labels={"stage": "again"}):
            evaluate(program)  # all cache hits: reported, free
    report = {
        r["stage"]: r for r in dspex.traces.report("cost", tmp_path, run_id="cost").to_pylist()
    }
    total = usage.total
    assert sum(r["calls"] for r in report.values()) == total.calls == 40
    assert sum(r["cache_hits"] for r in report.values()) == total.cache_hits == 20
    assert sum(r["cost"] or 0 for r in report.values()) == pytest.approx(total.cost)
    assert report["again"]["cost"] == 0
    assert sum(r["prompt_tokens"] for r in report.values()) == (
        total.prompt_tokens + total.cached_prompt_tokens
    )


def test_no_secret_reaches_a_parquet_file(tmp_path: Path) -> None:
    sim = DummyLM({"": {"answer": f"the key is {SENTINEL}"}})
    with serve(sim) as server:
        lm = LM("openai/sim", api_base=server.url, api_key=SENTINEL, cache=False)
        with dspex.traces.record(run_id="secret", runs_dir=tmp_path):
            dspex.Predict("question -> answer", lm=lm)(question=f"echo {SENTINEL}")
    files = list((tmp_path / "traces").rglob("*.parquet"))
    assert files
    for f in files:
        assert SENTINEL.encode() not in f.read_bytes()
    rows = dspex.traces.sql("SELECT messages, outputs FROM traces WHERE kind='lm'", tmp_path)
    assert "[REDACTED]" in rows.column("messages")[0].as_py()


_KILLED = textwrap.dedent(
    """
    import sys, time
    import dspex
    from dspex.datasets import load_task
    from dspex.testing import SimulatedLM

    task = load_task("arithmetic")
    lm = SimulatedLM(task=task, latency=0.01, cache=False)
    program = dspex.Predict("question -> answer: int", lm=lm)
    with dspex.traces.record(run_id="killed", runs_dir=sys.argv[1], flush_rows=20,
                             flush_seconds=0.05):
        print("recording", flush=True)
        while True:  # until killed
            dspex.Evaluate(devset=task.examples, metric=lambda e, p, t=None: 1.0,
                           concurrency=8, progress=False)(program)
    """
)


def test_a_process_killed_mid_run_leaves_readable_traces(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(tmp_path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"recording"
        run_dir = tmp_path / "traces" / "run_id=killed"
        deadline = time.monotonic() + 30
        while len(list(run_dir.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    rows = dspex.traces.sql("SELECT kind, count(*) AS n FROM traces GROUP BY kind", tmp_path)
    counts = {r["kind"]: r["n"] for r in rows.to_pylist()}
    assert counts.get("lm", 0) >= 20
