"""The ``dspex`` command ends without the interpreter's teardown, after every exit hook that
saves or stops something (dspex/cli/_exit.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
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


EVALUATE = """
program = "cot:question -> answer: int"
[dataset]
task = "arithmetic"
split = "dev"
train_size = 10
dev_size = 10
[lm]
model = "dspex-sim/arithmetic"
[tracking]
experiment = "exit"
"""


@pytest.mark.slow
def test_the_command_leaves_a_complete_run_behind(tmp_path: Path) -> None:
    """``python -m dspex evaluate`` (the console script's code path): what the exit hooks
    save is all there after the fast exit — the MLflow run finished, its traces written, and
    in Prefect's database the flow run and its task runs completed (their events drain into
    the local server before it stops)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect")  # this worker's, migrated
    runs = tmp_path / "runs"
    (tmp_path / "eval.toml").write_text(EVALUATE)
    started = datetime.now(UTC).replace(tzinfo=None)
    proc = subprocess.run(
        [sys.executable, "-m", "dspex", "evaluate", str(tmp_path / "eval.toml"),
         "--runs-dir", str(runs)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "over 10 examples" in proc.stdout  # the last line it prints

    client = dspex.mlflow.tracking_client(f"sqlite:///{runs / 'mlflow.db'}")
    found = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert found and all(r.info.status == "FINISHED" for r in found)
    # Each of the evaluation's 10 LM calls is a trace row of its MLflow run.
    lm_rows = dspex.traces.sql(
        "SELECT count(*) AS n FROM traces WHERE kind = 'lm' AND run_id = ?",
        runs_dir=runs,
        params=[found[0].info.run_id],
    )
    assert len(found) == 1 and lm_rows.to_pylist()[0]["n"] == 10

    with sqlite3.connect(home / "prefect.db") as db:
        flows = db.execute(
            "SELECT id, state_type FROM flow_run WHERE created >= ?", (str(started),)
        ).fetchall()
        assert len(flows) == 1 and flows[0][1] == "COMPLETED"
        tasks = db.execute(
            "SELECT state_type FROM task_run WHERE flow_run_id = ?", (flows[0][0],)
        ).fetchall()
    assert tasks and {s for (s,) in tasks} == {"COMPLETED"}


def test_usage_errors_keep_their_status() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dspex", "no-such-command"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
