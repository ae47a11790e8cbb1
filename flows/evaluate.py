"""The evaluate flow: score a program (or a registered model) on a dataset, log to MLflow."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

import dspex
from dspex._paths import runs_dir
from dspex.optimize import EvaluateParams
from dspex.optimize._refs import resolve_metric, resolve_program
from tasks._common import task_options
from tasks.data import load_dataset
from tasks.tracking import tracking_uri_for

__all__ = ["evaluate"]


def _program(ref: str) -> dspex.Module:
    if ref.startswith("models:/"):
        import dspex.mlflow

        return dspex.mlflow.load_model(ref)
    return resolve_program(ref)


@task(name="evaluate-program", **task_options())
def evaluate_program(params: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """Score the program on the dataset; the result is persisted and reused on a re-run."""
    p = EvaluateParams.model_validate(params)
    program = _program(p.program)
    overrides: dict[str, Any] = {"labels": {"stage": "evaluate"}}
    if p.lm is not None:
        overrides["lm"] = p.lm.build()
    with dspex.context(**overrides):
        result = dspex.Evaluate(
            devset=p.dataset.load(),
            metric=resolve_metric(p.metric),
            concurrency=p.concurrency,
            progress=False,
        )(program)
    u = result.usage
    return {
        "score": result.score,
        "n": result.n,
        "errors": result.n_errors,
        "first_errors": [r.error for r in result.errors[:5]],
        "lm_calls": u.calls,
        "cache_hits": u.cache_hits,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "cost": u.cost,
    }


@flow(name="dspex-evaluate", persist_result=False)
def evaluate(params: EvaluateParams) -> dict[str, Any]:
    """Evaluate a program on a dataset and log the score as an MLflow run."""
    from mlflow.tracking import MlflowClient

    from dspex.integrations.mlflow import ensure_experiment

    runs = runs_dir(params.runs_dir)
    uri = tracking_uri_for(params, runs)  # before loading a 'models:/' program from it
    data = load_dataset(params.dataset.model_dump(), "dataset")
    summary = evaluate_program(params.model_dump(mode="json"), data["fingerprint"])
    client = MlflowClient(tracking_uri=uri)
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
