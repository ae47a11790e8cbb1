"""An evaluation logged as an MLflow run, against real MLflow on SQLite."""

from __future__ import annotations

import dspex.mlflow
from dspex.integrations.mlflow._evaluation import (
    finish_evaluation,
    open_evaluation,
)
from tests.integrations.conftest import Tracking


def test_an_evaluation_is_one_finished_run_with_its_scores(tracking: Tracking) -> None:
    summary = {"score": 62.5, "n": 8, "errors": 1, "lm_calls": 8, "cache_hits": 2, "cost": None}
    run_id = open_evaluation(
        tracking.uri, "dspex-tests", tracking.runs_dir, "cot:question -> answer", "f" * 16
    )
    finish_evaluation(tracking.uri, run_id, summary)
    run = dspex.mlflow.tracking_client(tracking.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "evaluate-ffffffff"
    assert run.data.tags["dspex.kind"] == "evaluate"
    assert run.data.params == {"program": "cot:question -> answer", "dataset_fingerprint": "f" * 16}
    assert run.data.metrics == {"score": 62.5, "errors": 1.0, "lm_calls": 8.0, "cache_hits": 2.0}


def test_a_failed_evaluation_ends_its_run_failed(tracking: Tracking) -> None:
    run_id = open_evaluation(
        tracking.uri, "dspex-tests", tracking.runs_dir, "cot:question -> answer", "e" * 16
    )
    client = dspex.mlflow.tracking_client(tracking.uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # traced under while it runs
    finish_evaluation(tracking.uri, run_id, None)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.metrics == {}
