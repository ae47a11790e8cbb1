"""MIPROv2 as a flow: beats random search, reproducible, failures recorded, study stored."""

from __future__ import annotations

from pathlib import Path

import pytest

import dspex
from dspex.datasets import load_task
from dspex.testing import SimulatedLM
from tests.flows.programs import exact, solver

pytestmark = pytest.mark.slow

TASK = load_task("arithmetic")
TRAIN, VAL, TEST = TASK.split(train=60, dev=100, test=100, seed=1)


def _score(program: dspex.Module, lm: dspex.LM) -> float:
    with dspex.context(lm=lm):
        return dspex.Evaluate(devset=TEST, metric=exact, concurrency=16, progress=False)(
            program
        ).score


def test_light_beats_random_search_reproducibly(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lm = SimulatedLM(task=TASK)
    rs = dspex.BootstrapFewShotWithRandomSearch(
        exact, num_candidate_programs=3, max_bootstrapped_demos=4, max_labeled_demos=4
    )
    rs_best = rs.compile(solver(), trainset=TRAIN, valset=VAL, lm=lm, runs_dir=tmp_path / "rs")
    results = []
    for attempt in ("a", "b"):  # fresh LM cache and runs dir: nothing is reused
        monkeypatch.setenv("DSPEX_CACHE_DIR", str(tmp_path / attempt / "cache"))
        opt = dspex.MIPROv2(exact, auto="light", seed=0)
        best = opt.compile(
            solver(), trainset=TRAIN, valset=VAL, lm=lm, runs_dir=tmp_path / attempt / "runs"
        )
        assert opt.last_result is not None
        results.append((opt.last_result, best))
    (first, best_a), (second, best_b) = results
    assert first.candidates == second.candidates
    assert best_a.dump_state()["predictors"] == best_b.dump_state()["predictors"]
    trials = [c for c in first.candidates if c["kind"] == "minibatch"]
    assert len(trials) == 10  # light: 6 candidates, 1 predictor -> max(2*2*log2(6), 9)
    assert _score(best_a, lm) >= _score(rs_best, lm) + 10


def test_failed_evaluations_are_recorded_as_failed_not_zero(tmp_path: Path) -> None:
    import optuna

    class Broken(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qa = dspex.ChainOfThought("question -> answer: int")

        def forward(self, question: str) -> dspex.Prediction:
            if "apples" in self.qa.predict.signature.instructions.lower() or True:
                raise RuntimeError("tool is down")
            return self.qa(question=question)  # pragma: no cover

    opt = dspex.MIPROv2(
        exact,
        auto=None,
        num_candidates=2,
        num_trials=2,
        max_bootstrapped_demos=0,
        max_labeled_demos=2,
        seed=0,
    )
    opt.compile(
        Broken(), trainset=TRAIN[:10], valset=VAL[:20], lm=SimulatedLM(task=TASK), runs_dir=tmp_path
    )
    result = opt.last_result
    assert result is not None
    trials = [c for c in result.candidates if c["kind"] == "minibatch"]
    assert trials and all(c["score"] is None for c in trials)
    assert all("tool is down" in (c["error"] or "") for c in trials)
    study_files = list((tmp_path / "optuna").glob("*.db"))
    assert len(study_files) == 1
    summaries = optuna.get_all_study_summaries(f"sqlite:///{study_files[0]}")
    study = optuna.load_study(
        study_name=summaries[0].study_name, storage=f"sqlite:///{study_files[0]}"
    )
    states = {t.state for t in study.trials}
    assert states == {optuna.trial.TrialState.FAIL}


def test_every_trial_is_visible_in_mlflow_traces_and_prefect(tmp_path: Path) -> None:
    import mlflow

    opt = dspex.MIPROv2(
        exact,
        auto=None,
        num_candidates=3,
        num_trials=4,
        trial_batch_size=2,
        minibatch_size=10,
        minibatch_full_eval_steps=2,
        seed=0,
    )
    opt.compile(
        solver(), trainset=TRAIN[:20], valset=VAL[:30], lm=SimulatedLM(task=TASK), runs_dir=tmp_path
    )
    result = opt.last_result
    assert result is not None
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(result.mlflow_run_id)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    trials = sorted(
        (c for c in children if c.data.params.get("kind") == "minibatch"),
        key=lambda c: c.data.tags["dspex.candidate"],
    )
    assert [c.data.tags["dspex.candidate"] for c in trials] == [f"trial-{i}" for i in range(4)]
    assert all("predict.instruction=" in c.data.params["config"] for c in trials)
    assert any(c.data.params.get("kind") == "full" for c in children)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/optimization_history.svg" in artifacts
    assert run.data.metrics["lm_calls.search"] > 0 and run.data.metrics["lm_calls.propose"] > 0
    rows = dspex.traces.sql(
        "SELECT DISTINCT trial FROM traces WHERE stage = 'search' AND kind = 'lm' ORDER BY 1",
        tmp_path,
    ).to_pylist()
    # A trial repeating an earlier trial's configuration reuses its score: no LM call.
    reused = {c["id"]: c["reused_from"] for c in result.candidates if c.get("reused_from")}
    evaluated = [i for i in range(4) if f"trial-{i}" not in reused]
    assert [r["trial"] for r in rows] == evaluated
    scores = {c["id"]: (c["score"], c["config"]) for c in result.candidates}
    assert all(scores[trial] == scores[earlier] for trial, earlier in reused.items())
