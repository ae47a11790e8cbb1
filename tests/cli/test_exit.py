"""The ``dspex`` command ends without the interpreter's teardown, after every exit hook that
saves or stops something (dspex/cli/_exit.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import dspex.mlflow
import dspex.traces

HOOKS = """
import atexit, sys, threading
from pathlib import Path
out = Path(sys.argv[1])

class Teardown:
    def __del__(self):  # runs only if the interpreter tears its modules down
        (out / "teardown").write_text("ran")

kept = Teardown()
atexit.register(lambda: (out / "atexit").write_text("ran"))
threading._register_atexit(lambda: (out / "threading").write_text("ran"))
print("printed before exit", end="")  # unflushed: must still reach the pipe
from dspex.cli._exit import exit_without_teardown
exit_without_teardown(3)
"""


def test_exit_runs_the_hooks_keeps_the_status_and_skips_teardown(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HOOKS, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "printed before exit"
    assert (tmp_path / "threading").exists() and (tmp_path / "atexit").exists()
    assert not (tmp_path / "teardown").exists()


@pytest.mark.slow
def test_the_command_leaves_a_complete_run_behind(tmp_path: Path) -> None:
    """``python -m dspex demo`` (the console script's code path): what the exit hooks save is
    all there after the fast exit — the MLflow run finished, the traces readable, and in
    Prefect's database the flow run and every task run completed (their events drain into
    the local server before it stops)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "dspex", "demo", "--dev-size", "12", "--candidates", "1",
         "--runs-dir", str(runs)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traces:" in proc.stdout  # the last lines it prints

    client = dspex.mlflow.tracking_client(f"sqlite:///{runs / 'mlflow.db'}")
    experiments = client.search_experiments()
    finished = [
        r
        for e in experiments
        for r in client.search_runs([e.experiment_id])
        if r.data.tags.get("mlflow.parentRunId") is None
    ]
    assert finished and all(r.info.status == "FINISHED" for r in finished)
    lm_rows = dspex.traces.sql("SELECT count(*) AS n FROM traces WHERE kind = 'lm'", runs_dir=runs)
    assert lm_rows.to_pylist()[0]["n"] > 0

    with sqlite3.connect(tmp_path / "prefect-home" / "prefect.db") as db:
        flows = db.execute("select state_type from flow_run").fetchall()
        tasks = db.execute("select state_type from task_run").fetchall()
    assert flows and {s for (s,) in flows} == {"COMPLETED"}
    assert tasks and {s for (s,) in tasks} == {"COMPLETED"}


def test_usage_errors_keep_their_status() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dspex", "no-such-command"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
