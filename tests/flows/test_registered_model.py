"""A program optimized by a flow and registered is loaded by alias in a fresh process."""

from __future__ import annotations

from pathlib import Path

import pytest

import dspex
from tests.flows.programs import DEV, TRAIN, exact, solver
from tests.fresh import run_fresh

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
    answers = run_fresh(
        LOAD, questions, cwd=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    assert len(answers) == 3
    assert all(isinstance(a["answer"], int) for a in answers)
    assert sum(a["answer"] == ex.answer for a, ex in zip(answers, DEV[:3], strict=True)) >= 1
