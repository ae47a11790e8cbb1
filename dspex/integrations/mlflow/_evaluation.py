"""An evaluation as an MLflow run: the program, the dataset's fingerprint, the scores."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dspex.integrations.mlflow._tracking import ensure_experiment, tracking_client

__all__ = ["finish_evaluation", "open_evaluation"]

_METRICS = ("score", "errors", "lm_calls", "cache_hits", "cost")


def open_evaluation(
    tracking_uri: str,
    experiment: str,
    runs_dir: Path,
    program_ref: str,
    dataset_fingerprint: str,
) -> str:
    """Start the MLflow run of one evaluation (of ``experiment``) and return its id: the
    evaluation's LM calls are traced under it while it runs."""
    from mlflow.entities import Param

    client = tracking_client(tracking_uri)
    run = client.create_run(
        ensure_experiment(experiment, runs_dir=runs_dir),
        run_name=f"evaluate-{dataset_fingerprint[:8]}",
        tags={"dspex.kind": "evaluate", "dspex.program": program_ref},
    )
    run_id: str = run.info.run_id
    client.log_batch(
        run_id,
        params=[
            Param("program", program_ref),
            Param("dataset_fingerprint", dataset_fingerprint),
        ],
    )
    return run_id


def finish_evaluation(tracking_uri: str, run_id: str, summary: Mapping[str, Any] | None) -> None:
    """Log the evaluation's ``summary`` (its score, errors, LM calls, ...) and end the run;
    ``None``: it failed."""
    from mlflow.entities import Metric

    client = tracking_client(tracking_uri)
    if summary is None:
        client.set_terminated(run_id, "FAILED")
        return
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, float(summary[key]), now, 0)
            for key in _METRICS
            if summary.get(key) is not None
        ],
    )
    client.set_terminated(run_id, "FINISHED")
