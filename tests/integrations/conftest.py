"""MLflow on SQLite in a temporary runs directory, shared by the integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dspex.mlflow
from dspex.integrations.mlflow._imports import import_mlflow


@dataclass(frozen=True)
class Tracking:
    uri: str
    experiment_id: str
    runs_dir: Path


@pytest.fixture(scope="package")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracking]:
    """One SQLite tracking database for the package (creating its tables takes a second)."""
    import mlflow

    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    runs = tmp_path_factory.mktemp("mlflow-runs")
    uri = dspex.mlflow.configure_tracking(dspex.mlflow.embedded_tracking_uri(runs))
    experiment_id = dspex.mlflow.ensure_experiment("dspex-tests", runs_dir=runs)
    yield Tracking(uri, experiment_id, runs)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    if saved_env is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved_env


@pytest.fixture(autouse=True)
def _tracking_uri_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """MLflow imported the way dspex imports it (without its import-time warnings, which
    are errors here); tests that use ``tracking`` get its URI back even if another test
    changed it; no test leaves a run open."""
    import_mlflow()
    import mlflow

    if "tracking" in request.fixturenames:
        mlflow.set_tracking_uri(request.getfixturevalue("tracking").uri)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
