"""A flow run killed mid-optimization resumes: finished tasks and LM calls are not repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dspex.testing import fetch_stats, start_server_process

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]


def compile_and_report(url: str) -> str:
    """The job every run of this test makes: ``RESULT <score> <registered version>``."""
    import dspex
    from dspex.evaluate import exact_match
    from tests.flows.programs import SMALL_DEV, SMALL_TRAIN, solver

    lm = dspex.LM("openai/sim", api_base=url)
    opt = dspex.BootstrapFewShotWithRandomSearch(
        exact_match, num_candidate_programs=4, max_bootstrapped_demos=3, max_labeled_demos=4
    )
    opt.compile(
        solver(),
        trainset=SMALL_TRAIN,
        valset=SMALL_DEV,
        lm=lm,
        concurrency=4,
        tracking={"model_name": "resume-qa"},
    )
    assert opt.last_result is not None
    return f"RESULT {opt.last_result.score} {opt.last_result.model_version}"


SCRIPT = textwrap.dedent(
    """
    import sys
    from tests.flows.test_resume import compile_and_report

    print(compile_and_report(sys.argv[1]), flush=True)
    """
)


def _start(url: str, home: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREFECT_HOME": str(home / "prefect"),
        "DSPEX_RUNS_DIR": str(home / "runs"),
        "DSPEX_CACHE_DIR": str(home / "cache"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)  # each run uses Prefect's ephemeral mode, like a notebook
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


def _finish(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return next(line for line in out.splitlines() if line.startswith("RESULT"))


def test_killed_run_resumes_without_repeating_finished_work(tmp_path: Path) -> None:
    with start_server_process("arithmetic", latency=0.03) as server:
        # An uninterrupted run, for the number of LM calls the whole job takes (in this
        # process: its Prefect server is up already).
        baseline = compile_and_report(server.url)
        full = fetch_stats(server.url)["requests"]

        # The same job, killed (SIGKILL) once a few candidates are built and persisted and
        # more calls were made than can be in flight (else reusing nothing would pass too)...
        in_flight = 4 * 4  # concurrency per task x task workers
        home = tmp_path / "b"
        home.mkdir()
        proc = _start(server.url, home)
        results = home / "runs" / "prefect-results"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            built = results.is_dir() and len(list(results.iterdir())) >= 3
            if built and fetch_stats(server.url)["requests"] - full > 2 * in_flight:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        persisted = len(list(results.iterdir()))
        before_kill = fetch_stats(server.url)["requests"] - full
        assert in_flight < before_kill < full, "the kill must land mid-run"

        # ...then started again with the same parameters.
        resumed = _finish(_start(server.url, home))
        after = fetch_stats(server.url)["requests"] - full - before_kill

    assert persisted >= 3
    # Finished tasks were reused and finished LM calls came from the cache: the two halves
    # together made the calls of one run, give or take what was in flight at the kill.
    assert before_kill + after <= full + in_flight
    assert after < full - before_kill + in_flight
    # And the result is the same as the uninterrupted run's, registered once.
    assert resumed.split()[1] == baseline.split()[1]
    assert resumed.split()[2] == "1"
