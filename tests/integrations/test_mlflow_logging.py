"""What an optimization run logs, against real MLflow on SQLite: its run (found again by its
key), one child run per candidate, the winner and its registered version; every step can
run twice without duplicating anything."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import dspex
import dspex.mlflow
from dspex.integrations.mlflow._logging import (
    CANDIDATE_TAG,
    RUN_KEY_TAG,
    WinnerModel,
    log_candidates,
    log_study_plots,
    log_winner,
    open_optimization_run,
    register_winner,
)
from dspex.optimize import DatasetSpec, OptimizeParams, TrackingSpec
from tests.integrations.conftest import Tracking
from tests.integrations.programs import ArithmeticQA


def _params(experiment: str, **settings: Any) -> OptimizeParams:
    return OptimizeParams(
        program="tests.integrations.programs:ArithmeticQA",
        trainset=DatasetSpec(task="arithmetic", train_size=4),
        settings=settings,
        tracking=TrackingSpec(experiment=experiment),
    )


def _key() -> str:
    return uuid.uuid4().hex[:16]


def _rows(*scores: float | None) -> list[dict[str, Any]]:
    return [
        {"id": f"c{i}", "kind": "bootstrap", "demos": i, "score": s, "errors": 0, "lm_calls": 3}
        for i, s in enumerate(scores)
    ]


def test_a_run_is_opened_once_per_key_until_it_finishes(tracking: Tracking) -> None:
    # Settings a validated OptimizeParams would refuse: the logger must redact whatever it gets.
    leaky = {"api_key": "plain-secret", "note": "sk-abcdefghijklmnop1234"}
    params = _params("logging-open").model_copy(update={"settings": leaky})
    key = _key()
    run_id = open_optimization_run(tracking.uri, params, key, tracking.runs_dir)
    client = dspex.mlflow.tracking_client(tracking.uri)
    run = client.get_run(run_id)

    assert run.info.run_name == f"BootstrapFewShotWithRandomSearch-{key[:8]}"
    assert run.data.tags[RUN_KEY_TAG] == key
    assert run.data.tags["dspex.program"] == params.program
    assert run.data.tags["dspex.traces"] == str(tracking.runs_dir / "traces" / f"run_id={run_id}")
    assert run.data.params["trainset.task"] == "arithmetic"
    assert run.data.params["tracking.experiment"] == "logging-open"
    assert "settings.api_key" not in run.data.params  # credentials never reach MLflow
    assert "sk-abcdefghijklmnop1234" not in run.data.params["settings.note"]
    assert "runs_dir" not in run.data.params  # None values are left out

    again = open_optimization_run(tracking.uri, params, key, tracking.runs_dir)
    assert again == run_id
    assert client.get_run(run_id).data.tags["dspex.resumed"] == "true"

    client.set_terminated(run_id, "FINISHED")
    assert open_optimization_run(tracking.uri, params, key, tracking.runs_dir) != run_id


def test_more_parameters_than_one_mlflow_batch_takes_are_all_logged(tracking: Tracking) -> None:
    settings = {f"knob_{i:03d}": i for i in range(150)}  # MLflow takes 100 per batch
    params = _params("logging-many").model_copy(update={"settings": settings})
    run_id = open_optimization_run(tracking.uri, params, _key(), tracking.runs_dir)
    logged = dspex.mlflow.tracking_client(tracking.uri).get_run(run_id).data.params
    assert {k: v for k, v in logged.items() if k.startswith("settings.")} == {
        f"settings.{k}": str(v) for k, v in settings.items()
    }


def test_candidates_are_child_runs_logged_once(tracking: Tracking) -> None:
    parent = open_optimization_run(
        tracking.uri, _params("logging-candidates"), _key(), tracking.runs_dir
    )
    client = dspex.mlflow.tracking_client(tracking.uri)
    experiment_id = client.get_run(parent).info.experiment_id

    log_candidates(tracking.uri, parent, _rows(50.0))
    rows = _rows(50.0, None, 75.0)
    rows[1]["error"] = "LMRateLimitError: slow down"
    log_candidates(tracking.uri, parent, rows)  # as rows come in: the first one again
    log_candidates(tracking.uri, parent, rows)  # a resumed run

    children = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    by_id = {c.data.tags[CANDIDATE_TAG]: c for c in children}
    assert sorted(by_id) == ["c0", "c1", "c2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert by_id["c2"].data.metrics == {"score": 75.0, "errors": 0.0, "lm_calls": 3.0}
    assert by_id["c2"].data.params == {"candidate": "c2", "demos": "2", "kind": "bootstrap"}
    assert "score" not in by_id["c1"].data.metrics
    assert by_id["c1"].data.tags["dspex.error"] == "LMRateLimitError: slow down"
    history = client.get_metric_history(parent, "candidate_score")
    assert sorted((m.step, m.value) for m in history) == [(0, 50.0), (2, 75.0)]
    logged = client.download_artifacts(parent, "candidates.json", str(tracking.runs_dir))
    assert '"error": "LMRateLimitError: slow down"' in Path(logged).read_text()


def test_the_winner_is_logged_once_and_its_run_finished(tracking: Tracking, tmp_path: Path) -> None:
    run_id = open_optimization_run(
        tracking.uri, _params("logging-winner"), _key(), tracking.runs_dir
    )
    winner = ArithmeticQA()
    path = winner.save(tmp_path / "program.json")
    usage = {
        "calls": 12,
        "cache_hits": 2,
        "prompt_tokens": 300,
        "completion_tokens": None,
        "cost": 0.5,
        "by_stage": {"bootstrap": {"calls": 4, "tokens": 100}},
    }
    best = {"id": "c1", "score": 80.0}
    model = WinnerModel.pack(winner)
    assert model.packed is not None and model.not_logged is None

    log_winner(tracking.uri, run_id, model, best, path, True, usage)
    log_winner(tracking.uri, run_id, model, best, path, True, usage)  # a resumed run

    client = dspex.mlflow.tracking_client(tracking.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {
        "best_score": 80.0,
        "lm_calls": 12.0,
        "lm_cache_hits": 2.0,
        "lm_prompt_tokens": 300.0,
        "lm_cost_usd": 0.5,
        "lm_calls.bootstrap": 4.0,
        "lm_tokens.bootstrap": 100.0,
    }
    assert run.data.tags["dspex.best_candidate"] == "c1"
    assert run.data.tags["dspex.budget_exhausted"] == "true"
    assert [f.path for f in client.list_artifacts(run_id, "program_json")] == [
        "program_json/program.json"
    ]
    outputs = run.outputs.model_outputs if run.outputs else []
    assert len(outputs) == 1  # not a second model on the re-run
    loaded = dspex.mlflow.load_model(f"models:/{outputs[0].model_id}")
    assert isinstance(loaded, ArithmeticQA)


def test_a_winner_no_process_can_rebuild_keeps_its_json_only(
    tracking: Tracking, tmp_path: Path
) -> None:
    class Local(dspex.Module):  # defined in a function: another process cannot import it
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspex.Predict("question -> answer")

    model = WinnerModel.pack(Local())
    assert model.packed is None
    assert model.not_logged is not None and "defined in a function" in model.not_logged

    run_id = open_optimization_run(
        tracking.uri, _params("logging-local"), _key(), tracking.runs_dir
    )
    path = Local().save(tmp_path / "program.json")
    log_winner(tracking.uri, run_id, model, {"id": "c0", "score": None}, path, False, {})

    run = dspex.mlflow.tracking_client(tracking.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dspex.model_not_logged"] == model.not_logged
    assert run.data.tags["dspex.budget_exhausted"] == "false"
    assert "best_score" not in run.data.metrics
    assert not (run.outputs and run.outputs.model_outputs)


def test_the_winner_is_registered_once_per_run_and_aliased(
    tracking: Tracking, tmp_path: Path
) -> None:
    run_id = open_optimization_run(
        tracking.uri, _params("logging-register"), _key(), tracking.runs_dir
    )
    winner = ArithmeticQA()
    path = winner.save(tmp_path / "program.json")
    log_winner(tracking.uri, run_id, WinnerModel.pack(winner), {"id": "c0"}, path, False, {})

    version = register_winner(tracking.uri, run_id, "logging-qa", "champion")
    assert register_winner(tracking.uri, run_id, "logging-qa", None) == version
    champion = dspex.mlflow.get_version_by_alias("logging-qa", "champion")
    assert champion is not None and str(champion.version) == version
    assert champion.run_id == run_id


def test_study_plots_are_artifacts_or_skipped_with_a_tag(
    tracking: Tracking, tmp_path: Path
) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="plots", storage=storage, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    run_id = open_optimization_run(
        tracking.uri, _params("logging-plots"), _key(), tracking.runs_dir
    )

    log_study_plots(tracking.uri, run_id, storage, "plots", tmp_path / "plots")

    client = dspex.mlflow.tracking_client(tracking.uri)
    artifacts = [f.path for f in client.list_artifacts(run_id, "plots")]
    assert artifacts == ["plots/optimization_history.svg"]
    # Importances need more than one trial: noted, and the run goes on.
    tag = client.get_run(run_id).data.tags["dspex.plot.param_importances"]
    assert tag.startswith("skipped: ")


def test_param_importances_are_drawn_and_logged_as_values(
    tracking: Tracking, tmp_path: Path
) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="factorial", storage=storage, direction="maximize")
    for x in range(3):
        for y in range(2):
            study.enqueue_trial({"x": x, "y": y})

    def score(trial: optuna.Trial) -> float:  # x moves the score, y barely
        return trial.suggest_categorical("x", [0, 1, 2]) + 0.5 * trial.suggest_categorical(
            "y", [0, 1]
        )

    study.optimize(score, n_trials=6)
    run_id = open_optimization_run(
        tracking.uri, _params("logging-importances"), _key(), tracking.runs_dir
    )

    log_study_plots(tracking.uri, run_id, storage, "factorial", tmp_path / "plots")

    client = dspex.mlflow.tracking_client(tracking.uri)
    artifacts = sorted(f.path for f in client.list_artifacts(run_id, "plots"))
    assert artifacts == [
        "plots/optimization_history.svg",
        "plots/param_importances.json",
        "plots/param_importances.svg",
    ]
    values = client.download_artifacts(run_id, "plots/param_importances.json", str(tmp_path))
    logged = json.loads(Path(values).read_text())
    assert logged["trials"] == 6
    x, y = logged["params"]
    # By hand: SS_total 4.375; x: SS_between 4, 2 × MS_within 0.25 -> (4 - 0.25) / 4.375.
    assert (x["name"], x["groups"], x["trials"]) == ("x", 3, 6)
    assert x["epsilon_squared"] == pytest.approx(6 / 7)
    assert x["eta_squared"] == pytest.approx(4 / 4.375)
    # y explains less than a 2-group split explains by chance: floored at 0.
    assert (y["name"], y["epsilon_squared"], y["share"]) == ("y", 0.0, 0.0)
    assert x["share"] == 1.0
    assert "dspex.plot.param_importances" not in client.get_run(run_id).data.tags
    # The drawings are SVG documents of what was measured: a dot per trial, a bar per
    # parameter with ε² > 0, labelled with its share.
    history = _svg(
        client.download_artifacts(run_id, "plots/optimization_history.svg", str(tmp_path))
    )
    circles = history.findall(f"{SVG}circle")
    assert len(circles) == 6 + 1  # a dot per trial, then the legend's
    # Trial scores 0, 0.5, ..., 2.5 in trial order: left to right, each higher (smaller y)
    # than the last, and the best-so-far line ends at the best trial's dot.
    dots = [(float(c.get("cx", "")), float(c.get("cy", ""))) for c in circles[:6]]
    assert dots == sorted(dots) and [y for _, y in dots] == sorted(
        (y for _, y in dots), reverse=True
    )
    line = history.find(f"{SVG}polyline")
    assert line is not None
    last = line.get("points", "").split()[-1].split(",")
    assert (float(last[0]), float(last[1])) == pytest.approx(dots[-1])
    bars = _svg(client.download_artifacts(run_id, "plots/param_importances.svg", str(tmp_path)))
    texts = [t.text for t in bars.iter("{http://www.w3.org/2000/svg}text")]
    assert (
        "x" in texts
        and "1.00 (ε² 0.86)" in texts
        and "Parameter importances (6 completed trials)" in texts
    )


SVG = "{http://www.w3.org/2000/svg}"


def _svg(path: str) -> ET.Element:
    return ET.parse(path).getroot()
