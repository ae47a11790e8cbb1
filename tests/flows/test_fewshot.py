"""Few-shot optimizers as Prefect flows, logged to MLflow (SQLite), registered, resumable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import dspex
import dspex.mlflow as dspex_mlflow
from dspex.testing import SimulatedLM
from tests.flows.programs import DEV, TASK, TRAIN, exact, solver

pytestmark = pytest.mark.slow


def _evaluate(program: dspex.Module, lm: dspex.LM) -> float:
    with dspex.context(lm=lm):
        return dspex.Evaluate(devset=DEV, metric=exact, concurrency=16, progress=False)(
            program
        ).score


def test_random_search_beats_zero_shot_reproducibly(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lm = SimulatedLM(task=TASK)
    zero_shot = _evaluate(solver(), lm)
    results = []
    for attempt in ("a", "b"):  # fresh runs dir and LM cache each time: nothing reused
        monkeypatch.setenv("DSPEX_CACHE_DIR", str(tmp_path / attempt / "cache"))
        opt = dspex.BootstrapFewShotWithRandomSearch(
            exact, num_candidate_programs=3, max_bootstrapped_demos=3, max_labeled_demos=4, seed=7
        )
        best = opt.compile(
            solver(), trainset=TRAIN, valset=DEV, lm=lm, runs_dir=tmp_path / attempt / "runs"
        )
        assert opt.last_result is not None
        results.append((opt.last_result, best))
    (first, best_a), (second, best_b) = results
    assert [c["id"] for c in first.candidates] == [
        "zero-shot",
        "labeled",
        "bootstrap",
        "bootstrap-0",
        "bootstrap-1",
        "bootstrap-2",
    ]
    assert first.candidates == second.candidates  # same seed, same candidates and scores
    assert best_a.dump_state()["predictors"] == best_b.dump_state()["predictors"]
    assert first.score is not None and first.score >= zero_shot + 15
    assert _evaluate(best_a, lm) >= zero_shot + 15


def test_bootstrap_fewshot_raises_the_dev_score(tmp_path: Path) -> None:
    lm = SimulatedLM(task=TASK)
    zero_shot = _evaluate(solver(), lm)
    opt = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=4, max_labeled_demos=4)
    best = opt.compile(solver(), trainset=TRAIN, lm=lm, runs_dir=tmp_path)
    demos = best.predict.demos
    assert len(demos) == 4
    assert sum("reasoning" in d for d in demos) >= 1  # bootstrapped traces carry reasoning
    assert _evaluate(best, lm) >= zero_shot + 15


def test_labeled_fewshot_sets_k_demos_on_every_predictor(tmp_path: Path) -> None:
    best = dspex.LabeledFewShot(k=5).compile(
        solver(), trainset=TRAIN, lm=SimulatedLM(task=TASK), runs_dir=tmp_path
    )
    assert len(best.predict.demos) == 5
    assert all(d.answer in {ex.answer for ex in TRAIN} for d in best.predict.demos)


def test_budget_stops_cleanly_with_the_best_so_far(tmp_path: Path) -> None:
    lm = SimulatedLM(task=TASK)
    opt = dspex.BootstrapFewShotWithRandomSearch(
        exact, num_candidate_programs=2, max_bootstrapped_demos=2, max_labeled_demos=2
    )
    with dspex.track_usage() as usage:
        best = opt.compile(
            solver(),
            trainset=TRAIN,
            valset=DEV,
            lm=lm,
            runs_dir=tmp_path,
            budget={"max_calls": 120},
        )
    result = opt.last_result
    assert result is not None and result.budget_exhausted
    assert usage.total.calls - usage.total.cache_hits <= 120 + 16 * 4  # in flight at the cap
    assert isinstance(best, dspex.ChainOfThought)
    import mlflow

    run = mlflow.tracking.MlflowClient().get_run(result.mlflow_run_id)
    assert run.data.tags["dspex.budget_exhausted"] == "true"


def test_mlflow_run_children_artifacts_and_registered_alias(tmp_path: Path) -> None:
    import mlflow

    lm = SimulatedLM(task=TASK)
    opt = dspex.BootstrapFewShotWithRandomSearch(
        exact, num_candidate_programs=1, max_bootstrapped_demos=2, max_labeled_demos=2
    )
    opt.compile(
        solver(),
        trainset=TRAIN,
        valset=DEV,
        lm=lm,
        runs_dir=tmp_path,
        tracking={"experiment": "flows-test", "model_name": "arith-qa", "alias": "champion"},
    )
    result = opt.last_result
    assert result is not None and result.model_version == "1"
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer"] == "BootstrapFewShotWithRandomSearch"
    assert run.data.metrics["best_score"] == result.score
    history = client.get_metric_history(run.info.run_id, "candidate_score")
    assert [m.step for m in history] == [0, 1, 2, 3]
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert sorted(c.data.tags["dspex.candidate"] for c in children) == [
        "bootstrap",
        "bootstrap-0",
        "labeled",
        "zero-shot",
    ]
    assert Path(run.data.tags["dspex.traces"]).is_dir()
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "candidates.json")).read_text()
    )
    assert [r["id"] for r in table] == ["zero-shot", "labeled", "bootstrap", "bootstrap-0"]
    state = json.loads(
        Path(client.download_artifacts(run.info.run_id, "program_json"))
        .glob("*.json")
        .__next__()
        .read_text()
    )
    assert state["predictors"]["predict"]["demos"]
    version = client.get_model_version_by_alias("arith-qa", "champion")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    loaded = dspex_mlflow.load_model("models:/arith-qa@champion")
    # Same instructions and demos (the in-process test LM itself is not saved).
    for key in ("signature", "demos"):
        assert (
            loaded.dump_state()["predictors"]["predict"][key] == state["predictors"]["predict"][key]
        )
    rows = dspex.traces.sql(
        "SELECT stage, count(*) AS n FROM traces WHERE kind = 'lm' GROUP BY stage ORDER BY stage",
        tmp_path,
    ).to_pylist()
    assert {r["stage"] for r in rows} == {"bootstrap", "evaluate"}


def test_prefect_ui_gets_a_candidate_table_and_a_winner_summary(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    opt = dspex.LabeledFewShot(k=2)
    opt.compile(solver(), trainset=TRAIN, valset=DEV, lm=SimulatedLM(task=TASK), runs_dir=tmp_path)
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs()
        assert any(fr.name and fr.flow_id for fr in flow_runs)
        flows = {client.read_flow(fr.flow_id).name for fr in flow_runs}
        assert "dspex-labeled-fewshot" in flows
        keys = ArtifactFilterKey(any_=["dspex-candidates", "dspex-winner"])
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=keys))
    kinds = {a.key: a.type for a in artifacts}
    assert kinds == {"dspex-candidates": "table", "dspex-winner": "markdown"}


def test_racing_drops_a_hopeless_candidate_and_keeps_the_winner(tmp_path: Path) -> None:
    # Zero-shot is right ~2% of the time on this task; any correct demos lift it past 60%.
    task = dataclasses.replace(TASK, base_accuracy=0.0, reasoning_bonus=0.0, demo_bonus=0.3)
    lm = SimulatedLM(task=task)
    results = {}
    for racing in (False, True):
        opt = dspex.BootstrapFewShotWithRandomSearch(
            exact,
            num_candidate_programs=1,
            max_bootstrapped_demos=2,
            max_labeled_demos=4,
            racing=racing,
        )
        best = opt.compile(
            solver(), trainset=TRAIN, valset=DEV, lm=lm, runs_dir=tmp_path / str(racing)
        )
        assert opt.last_result is not None
        results[racing] = (opt.last_result, best)
    (full, best_full), (raced, best_raced) = results[False], results[True]
    by_id = {c["id"]: c for c in raced.candidates}
    assert by_id["zero-shot"]["dropped"] and by_id["zero-shot"]["score"] is None
    assert by_id["zero-shot"]["n"] == len(DEV) // 2  # scored on half the valset only
    # Every other candidate finished with the score a full evaluation gives it.
    assert {c["id"]: c["score"] for c in full.candidates if c["id"] != "zero-shot"} == {
        c["id"]: c["score"] for c in raced.candidates if c["id"] != "zero-shot"
    }
    assert raced.score == full.score
    assert best_raced.dump_state()["predictors"] == best_full.dump_state()["predictors"]
