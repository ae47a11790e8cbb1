"""The evaluate flow: score a program (or a registered model) on a dataset, log to MLflow."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from dspex._paths import runs_dir
from dspex._redact import redacted_errors
from dspex.optimize import EvaluateParams
from dspex.tasks.data import load_dataset
from dspex.tasks.evaluation import evaluate_program
from dspex.tasks.limits import lm_rate_limit

__all__ = ["evaluate"]


@flow(name="dspex-evaluate", persist_result=False)
def evaluate(params: EvaluateParams) -> dict[str, Any]:
    """Evaluate a program on a dataset and log the score as an MLflow run."""
    with redacted_errors():  # what it raises goes to the state message: no secret in it
        return _evaluate(params)


def _evaluate(params: EvaluateParams) -> dict[str, Any]:
    from dspex.integrations.mlflow._evaluation import finish_evaluation, open_evaluation
    from dspex.mlflow import configure_tracking
    from dspex.traces import record

    runs = runs_dir(params.runs_dir)
    # Before loading a 'models:/' program from it.
    uri = configure_tracking(params.tracking.tracking_uri, runs_dir=runs)
    data = load_dataset(params.dataset, "dataset")
    run_id = open_evaluation(
        uri, params.tracking.experiment, runs, params.program, data["fingerprint"]
    )
    summary = None
    try:
        # Every LM call of the evaluation is a trace row of its MLflow run.
        with lm_rate_limit(params), record(run_id=run_id, runs_dir=runs):
            summary = evaluate_program(params, data["fingerprint"])
    finally:
        finish_evaluation(uri, run_id, summary)
    create_table_artifact(
        table=[{k: summary[k] for k in ("score", "n", "errors", "lm_calls", "cache_hits")}],
        key="dspex-evaluation",
    )
    return {**summary, "mlflow_run_id": run_id}
