"""``compile()`` shows one progress display instead of Prefect's per-task lines and MLflow's
registration warning; ``DSPEX_VERBOSE=1`` brings the full logs back.

The compile runs in a child process, as a user's script does: Prefect's console logging
configured as it is by default (INFO), its stderr captured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    import dspex
    from dspex.testing import SimulatedLM
    from tests.flows.programs import TRAIN, exact, solver

    optimizer = dspex.BootstrapFewShotWithRandomSearch(
        metric=exact, max_bootstrapped_demos=1, max_labeled_demos=1, num_candidate_programs=1
    )
    optimizer.compile(
        solver(),
        trainset=list(TRAIN[:4]),
        valset=list(TRAIN[4:8]),
        lm=SimulatedLM(task="arithmetic"),
        runs_dir=sys.argv[1],
        tracking={"model_name": "progress-qa"},
    )
    print(f"SCORE {optimizer.last_result.score:.1f}")
    """
)


def _compile(tmp_path: Path, **env: str) -> tuple[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DSPEX_"))}
    environ |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(ROOT), **env}
    environ["DSPEX_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


@pytest.mark.slow  # two compiles in child processes (each starts Prefect's local server)
def test_compile_shows_progress_and_quiets_the_logs_unless_verbose(tmp_path: Path) -> None:
    out, err = _compile(tmp_path)
    score = out.split("SCORE ")[1].strip()
    assert "Finished in state" not in err
    assert "Beginning flow run" not in err
    assert "has no artifacts at artifact path" not in err
    # Not a terminal: plain lines (a line per stage change), the last one when the run ends.
    last = err.strip().splitlines()[-1]
    assert last.startswith("dspex-bootstrap-random-search | stage ")
    assert f"| best score {score} |" in last
    assert "| LM calls " in last and "| tasks " in last

    out, err = _compile(tmp_path, DSPEX_VERBOSE="1")  # resumed: cached tasks, a new version
    assert "Task run 'evaluate-" in err and "Finished in state" in err
    assert "has no artifacts at artifact path 'program'" in err
    assert "dspex-bootstrap-random-search | stage" not in err
