"""Finetuning tasks: passing traces → SFT data (logged to MLflow), LoRA training (progress to
MLflow and a Prefect progress artifact, resumable from checkpoints), the student's score."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from dspex.evaluate import Evaluate
from dspex.finetune import TrainSettings, sft_rows, train_lora, write_sft
from dspex.lm import LM
from dspex.mlflow import tracking_client
from dspex.optimize import DemoSet, RunInputs
from dspex.tasks._common import TaskRuntime, run_context, task_options

__all__ = ["evaluate_student", "finetune_predictor", "sft_dataset"]


@task(name="sft-dataset", cache_policy=NO_CACHE)
def sft_dataset(
    run: RunInputs,
    demos: Mapping[str, Any],
    out_dir: str,
    tracking_uri: str,
    mlflow_run_id: str,
) -> dict[str, dict[str, Any]]:
    """Per predictor: the chat SFT rows of the passing traces, written as JSONL + Parquet and
    logged to the MLflow run as a training dataset (and its files as artifacts)."""
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas

    with run_context(run) as ctx:
        rows = sft_rows(ctx.program, DemoSet.from_dict(demos).demos)
    client = tracking_client(tracking_uri)
    out: dict[str, dict[str, Any]] = {}
    for name, predictor_rows in rows.items():
        directory = write_sft(predictor_rows, Path(out_dir) / name)
        digest = hashlib.sha256((directory / "train.jsonl").read_bytes()).hexdigest()[:16]
        frame = pd.DataFrame(
            {
                "prompt": [json.dumps(r["prompt"]) for r in predictor_rows],
                "completion": [json.dumps(r["completion"]) for r in predictor_rows],
            }
        )
        with warnings.catch_warnings():  # MLflow notes that a path is ambiguous as a source
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(
                frame, source=str(directory / "train.parquet"), name=f"sft-{name}", digest=digest
            )
        from mlflow.entities import DatasetInput, InputTag

        client.log_inputs(
            mlflow_run_id,
            datasets=[
                DatasetInput(
                    dataset._to_mlflow_entity(),
                    tags=[InputTag("mlflow.data.context", "training")],
                )
            ],
        )
        client.log_artifacts(mlflow_run_id, str(directory), f"sft/{name}")
        out[name] = {
            "path": str(directory / "train.jsonl"),
            "rows": len(predictor_rows),
            "fingerprint": digest,
        }
    return out


@task(name="finetune-predictor", task_run_name="finetune-{predictor}", **task_options(retries=0))
def finetune_predictor(
    predictor: str,
    base_model: str,
    data_path: str,
    data_fingerprint: str,
    out_dir: str,
    train_kwargs: Mapping[str, Any],
    tracking_uri: str,
    mlflow_run_id: str,
) -> dict[str, Any]:
    """Train the predictor's LoRA adapter; a re-run resumes from the newest checkpoint and a
    finished one is reused (its persisted result). Loss and learning rate go to MLflow per
    step, progress to a Prefect progress artifact."""
    from mlflow.entities import Metric

    rows = [json.loads(line) for line in Path(data_path).read_text().splitlines() if line]
    settings = TrainSettings.from_dict(train_kwargs)
    client = tracking_client(tracking_uri)
    progress: Any = create_progress_artifact(0.0, description=f"finetuning {predictor}")

    def on_log(record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{key}.{predictor}", float(record[key]), now, step)
            for key in ("loss", "learning_rate", "grad_norm", "mean_token_accuracy")
            if _number(record.get(key))
        ]
        if metrics:
            client.log_batch(mlflow_run_id, metrics=metrics)
        if progress is not None:
            update_progress_artifact(progress, min(100.0, 100.0 * step / settings.max_steps))

    result = train_lora(base_model, rows, Path(out_dir) / predictor, settings, on_log=on_log)
    client.log_artifacts(mlflow_run_id, result["adapter_dir"], f"adapters/{predictor}")
    for key in ("loss_before", "loss_after"):
        if result[key] is not None:
            client.log_metric(mlflow_run_id, f"sft_{key}.{predictor}", result[key])
    # How the run used its device: throughput and peak memory, next to the losses.
    for key in ("tokens_per_s", "peak_memory_mb", "batch_size"):
        if _number(result.get(key)):
            client.log_metric(mlflow_run_id, f"sft_{key}.{predictor}", float(result[key]))
    if progress is not None:
        update_progress_artifact(progress, 100.0)
    return {**result, "rows": len(rows), "data_fingerprint": data_fingerprint}


def _number(value: Any) -> bool:
    """Whether a logged value is a number (trainer logs may hold strings or None)."""
    if value is None:
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@task(name="evaluate-student", **task_options())
def evaluate_student(
    run: RunInputs,
    lms: Mapping[str, Mapping[str, Any]],
    concurrency: int = 16,
    runtime: TaskRuntime | None = None,
) -> dict[str, Any]:
    """Score the program with each predictor on its finetuned LM (``lms``: LM configs)."""
    with run_context(run, runtime, stage="evaluate", candidate="finetuned") as ctx:
        student = ctx.program.deepcopy()
        for name, predictor in student.named_predictors():
            predictor.lm = LM.from_config(lms[name])
        devset = ctx.valset or ctx.trainset
        result = Evaluate(
            devset=devset, metric=ctx.metric, concurrency=concurrency, progress=False
        )(student)
    return {
        "score": result.score,
        "n": result.n,
        "errors": result.n_errors,
        "first_error": result.errors[0].error if result.errors else None,
        "lm_calls": result.usage.calls,
        "cache_hits": result.usage.cache_hits,
    }
