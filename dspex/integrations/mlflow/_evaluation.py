"""An evaluation as an MLflow run: the program, the dataset's fingerprint, the scores."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dspex.integrations.mlflow._tracking import ensure_experiment, tracking_client

__all__ = ["log_evaluation"]

_METRICS = ("score", "errors", "lm_calls", "cache_hits", "cost")


def log_evaluation(
    tracking_uri: str,
    experiment: str,
    runs_dir: Path,
    program_ref: str,
    dataset_fingerprint: str,
    summary: Mapping[str, Any],
) -> str:
    """Log one finished evaluation (``summary``: its score, errors, LM calls, ...) as a run of
    ``experiment`` and return the run's id."""
    from mlflow.entities import Metric, Param

    client = tracking_client(tracking_uri)
    run = client.create_run(
        ensure_experiment(experiment, runs_dir=runs_dir),
        run_name=f"evaluate-{dataset_fingerprint[:8]}",
        tags={"dspex.kind": "evaluate", "dspex.program": program_ref},
    )
    run_id: str = run.info.run_id
    now = run.info.start_time
    client.log_batch(
        run_id,
        params=[
            Param("program", program_ref),
            Param("dataset_fingerprint", dataset_fingerprint),
        ],
        metrics=[
            Metric(key, float(summary[key]), now, 0)
            for key in _METRICS
            if summary.get(key) is not None
        ],
    )
    client.set_terminated(run_id, "FINISHED")
    return run_id
