"""A program optimized by a flow and registered is loaded by alias in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dspex
from tests.flows.programs import DEV, TRAIN, exact, solver

pytestmark = pytest.mark.slow

LOAD = """
import json, sys
import mlflow
model = mlflow.pyfunc.load_model("models:/served-qa@champion")
rows = json.loads(sys.argv[1])
print(json.dumps(model.predict(rows).to_dict(orient="records")))
"""


def test_fresh_process_loads_the_champion_by_alias_and_predicts(tmp_path: Path) -> None:
    lm = dspex.LM("dspex-sim/arithmetic")  # reachable from any process, through litellm
    opt = dspex.BootstrapFewShotWithRandomSearch(
        exact, num_candidate_programs=1, max_bootstrapped_demos=2, max_labeled_demos=2
    )
    opt.compile(
        solver(),
        trainset=TRAIN,
        valset=DEV,
        lm=lm,
        runs_dir=tmp_path,
        tracking={"model_name": "served-qa", "alias": "champion"},
    )
    questions = [{"question": ex.question} for ex in DEV[:3]]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "DSPEX_CACHE_DIR": str(tmp_path / "fresh-cache"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    out = subprocess.run(
        [sys.executable, "-c", LOAD, json.dumps(questions)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(answers) == 3
    assert all(isinstance(a["answer"], int) for a in answers)
    assert sum(a["answer"] == ex.answer for a, ex in zip(answers, DEV[:3], strict=True)) >= 1
