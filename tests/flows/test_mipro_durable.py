"""MIPROv2's study survives a SIGKILL and can be shared by two worker processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dspex.testing import fetch_stats, start_server_process

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]


def compile_and_report(url: str) -> list[str]:
    """The search every run of these tests makes: its score, instruction and demo count."""
    import dspex
    from dspex.evaluate import exact_match
    from tests.flows.programs import SMALL_DEV, SMALL_TRAIN, solver

    lm = dspex.LM("openai/sim", api_base=url)
    opt = dspex.MIPROv2(
        exact_match,
        auto=None,
        num_candidates=4,
        num_trials=10,
        minibatch_size=10,
        minibatch_full_eval_steps=4,
        trial_batch_size=2,
        max_bootstrapped_demos=2,
        max_labeled_demos=2,
        seed=0,
    )
    best = opt.compile(solver(), trainset=SMALL_TRAIN, valset=SMALL_DEV, lm=lm, concurrency=4)
    assert opt.last_result is not None
    instructions = "_".join(best.predict.signature.instructions.split())
    return [str(opt.last_result.score), instructions, str(len(best.predict.demos))]


SCRIPT = textwrap.dedent(
    """
    import sys
    from tests.flows.test_mipro_durable import compile_and_report

    print("RESULT", *compile_and_report(sys.argv[1]))
    """
)


def _start(url: str, home: Path, worker: str = "") -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREFECT_HOME": str(home / f"prefect{worker}"),
        "DSPEX_RUNS_DIR": str(home / "runs"),
        "DSPEX_CACHE_DIR": str(home / "cache"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    # Its own MLflow store under DSPEX_RUNS_DIR, not the one a compile in this process set.
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, url],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> list[str]:
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    return next(line for line in out.splitlines() if line.startswith("RESULT")).split()[1:]


def _trials(home: Path) -> list[tuple[str, int | None, int]]:
    """(state, logical index, stale) of every trial in the run's study."""
    (db,) = (home / "runs" / "optuna").glob("*.db")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.state, "
            " (SELECT value_json FROM trial_user_attributes a WHERE a.trial_id = t.trial_id"
            "  AND a.key = 'index'), "
            " (SELECT count(*) FROM trial_user_attributes a WHERE a.trial_id = t.trial_id"
            "  AND a.key = 'stale') FROM trials t"
        ).fetchall()
    return [(s, None if i is None else int(i), stale) for s, i, stale in rows]


def _complete(home: Path) -> int:
    try:
        return sum(1 for s, _, _ in _trials(home) if s == "COMPLETE")
    except (ValueError, sqlite3.Error):
        return 0


def test_killed_search_resumes_from_its_trials_with_the_same_winner(tmp_path: Path) -> None:
    # Trials of 10 calls, 4 at a time, at 0.05 s a call: the six trials after the fourth and
    # their full evaluations take about a second in LM calls alone (plus their Prefect tasks),
    # while this test looks every 0.05 s, so the kill lands during the search.
    with start_server_process("arithmetic", latency=0.05) as server:
        # The uninterrupted search runs in this process (its Prefect server is up already).
        uninterrupted = compile_and_report(server.url)
        full = fetch_stats(server.url)["requests"]

        home = tmp_path / "b"
        home.mkdir()
        proc = _start(server.url, home)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and _complete(home) < 4:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        completed_before = _complete(home)
        killed = fetch_stats(server.url)["requests"] - full
        resumed = _finish(_start(server.url, home))
        after = fetch_stats(server.url)["requests"] - full - killed

    assert 4 <= completed_before < 10, "the kill must land during the Bayesian search"
    assert resumed == uninterrupted  # same score, instruction and demos
    assert killed + after <= full + 2 * 4  # in flight at the kill: trials x concurrency
    indices = sorted(i for s, i, stale in _trials(home) if s == "COMPLETE" and not stale)
    assert indices == list(range(10))


def test_two_workers_share_one_study_without_losing_or_duplicating_trials(
    tmp_path: Path,
) -> None:
    from dspex.mlflow import configure_tracking, ensure_experiment

    # The shared MLflow database exists before the workers start, as a tracking server would
    # (two processes creating one SQLite MLflow schema at once race in its migrations).
    configure_tracking(runs_dir=tmp_path / "runs")
    ensure_experiment("dspex", runs_dir=tmp_path / "runs")
    # Slow calls (a trial takes ~0.6 s) so that the search outlasts the gap between the two
    # workers' start-ups and both run trials.
    with start_server_process("arithmetic", latency=0.2) as server:
        workers = [_start(server.url, tmp_path, worker=str(i)) for i in (1, 2)]
        results = [_finish(w) for w in workers]
    trials = _trials(tmp_path)
    done = sorted(i for s, i, stale in trials if s in ("COMPLETE", "FAIL") and not stale)
    assert done == list(range(10))  # each logical trial exactly once
    assert not [t for t in trials if t[0] == "RUNNING"]
    (db,) = (tmp_path / "runs" / "optuna").glob("*.db")
    with sqlite3.connect(db) as conn:
        workers_seen = conn.execute(
            "SELECT count(DISTINCT value_json) FROM trial_user_attributes WHERE key = 'worker'"
        ).fetchone()[0]
    assert workers_seen == 2  # both workers ran trials
    assert all(r[0] != "None" for r in results)
