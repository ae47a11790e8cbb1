"""The evaluate flow: score a program (or a registered model) on a dataset, log to MLflow."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from dspex._paths import runs_dir
from dspex.optimize import EvaluateParams
from dspex.tasks.data import load_dataset
from dspex.tasks.evaluation import evaluate_program
from dspex.tasks.limits import lm_rate_limit

__all__ = ["evaluate"]


@flow(name="dspex-evaluate", persist_result=False)
def evaluate(params: EvaluateParams) -> dict[str, Any]:
    """Evaluate a program on a dataset and log the score as an MLflow run."""
    from dspex.mlflow import configure_tracking, ensure_experiment, tracking_client

    runs = runs_dir(params.runs_dir)
    # Before loading a 'models:/' program from it.
    uri = configure_tracking(params.tracking.tracking_uri, runs_dir=runs)
    data = load_dataset(params.dataset, "dataset")
    with lm_rate_limit(params):
        summary = evaluate_program(params, data["fingerprint"])
    client = tracking_client(uri)
    run = client.create_run(
        ensure_experiment(params.tracking.experiment, runs_dir=runs),
        run_name=f"evaluate-{data['fingerprint'][:8]}",
        tags={"dspex.kind": "evaluate", "dspex.program": params.program},
    )
    client.log_param(run.info.run_id, "program", params.program)
    client.log_param(run.info.run_id, "dataset_fingerprint", data["fingerprint"])
    for key in ("score", "errors", "lm_calls", "cache_hits", "cost"):
        if summary.get(key) is not None:
            client.log_metric(run.info.run_id, key, float(summary[key]))
    client.set_terminated(run.info.run_id, "FINISHED")
    create_table_artifact(
        table=[{k: summary[k] for k in ("score", "n", "errors", "lm_calls", "cache_hits")}],
        key="dspex-evaluation",
    )
    return {**summary, "mlflow_run_id": run.info.run_id}
