"""Tracking configuration: explicit URI > $MLFLOW_TRACKING_URI > embedded SQLite, experiments
with pinned artifact locations, and no MLflow import at ``import dspex`` time."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dspex.integrations.mlflow._tracking
import dspex.mlflow
from dspex.testing import DummyLM, serve
from tests.integrations.conftest import Tracking


@pytest.fixture
def no_env_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No $MLFLOW_TRACKING_URI during the test; MLflow's own setting is undone after it."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def test_embedded_default_lives_under_the_runs_dir(no_env_uri: None, tmp_path: Path) -> None:
    import mlflow

    uri = dspex.mlflow.configure_tracking(runs_dir=tmp_path / "runs")
    assert uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs").is_dir()
    assert mlflow.get_tracking_uri() == uri


def test_a_second_default_call_follows_the_runs_dir(no_env_uri: None, tmp_path: Path) -> None:
    # mlflow.set_tracking_uri writes $MLFLOW_TRACKING_URI; that must not pin the first dir.
    dspex.mlflow.configure_tracking(runs_dir=tmp_path / "a")
    uri = dspex.mlflow.configure_tracking(runs_dir=tmp_path / "b")
    assert uri == dspex.mlflow.embedded_tracking_uri(tmp_path / "b")


def test_runs_dir_comes_from_the_environment(no_env_uri: None, tmp_path: Path) -> None:
    # The test conftest points $DSPEX_RUNS_DIR at tmp_path / "runs".
    assert dspex.mlflow.configure_tracking() == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"


def test_explicit_uri_then_environment_win(
    no_env_uri: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    assert dspex.mlflow.configure_tracking(runs_dir=tmp_path) == env_uri
    with serve(DummyLM([])) as server:  # a loopback server that answers the reachability check
        explicit = server.url.rstrip("/").removesuffix("/v1")
        assert dspex.mlflow.configure_tracking(explicit) == explicit


def test_ensure_experiment_pins_artifacts_and_is_idempotent(
    tracking: Tracking, tmp_path: Path
) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    first = dspex.mlflow.ensure_experiment("pinned exp/1", runs_dir=tmp_path)
    assert dspex.mlflow.ensure_experiment("pinned exp/1", runs_dir=tmp_path) == first
    location = client.get_experiment(first).artifact_location
    assert location == (tmp_path / "mlartifacts" / "pinned-exp-1").as_uri()

    client.delete_experiment(first)
    assert dspex.mlflow.ensure_experiment("pinned exp/1", runs_dir=tmp_path) == first
    assert client.get_experiment(first).lifecycle_stage == "active"


def test_tracking_client_is_bound_to_the_configured_backend(
    no_env_uri: None, tmp_path: Path
) -> None:
    import mlflow

    client = dspex.mlflow.tracking_client(runs_dir=tmp_path / "runs")
    uri = dspex.mlflow.embedded_tracking_uri(tmp_path / "runs")
    assert client.tracking_uri == uri
    assert mlflow.get_tracking_uri() == uri  # what log_model and the registry helpers use
    explicit = f"sqlite:///{tmp_path / 'explicit.db'}"
    assert dspex.mlflow.tracking_client(explicit).tracking_uri == explicit
    assert mlflow.get_tracking_uri() == explicit


def test_importing_dspex_does_not_import_mlflow() -> None:
    code = (
        "import sys, dspex, dspex.mlflow, dspex.integrations.mlflow._loader\n"
        "heavy = [m for m in ('mlflow', 'pandas', 'litellm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class _Migrations(logging.Handler):
    """Counts MLflow's own "Creating initial MLflow database tables" log records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.runs = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.runs += "Creating initial MLflow database tables" in record.getMessage()


def test_new_stores_are_copies_of_one_migrated_template(
    no_env_uri: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("DSPEX_CACHE_DIR", str(tmp_path / "cache"))
    migrations = _Migrations()
    logger = logging.getLogger("mlflow.store.db.utils")
    logger.addHandler(migrations)
    try:
        uris = []
        for name in ("a", "b"):
            client = dspex.mlflow.tracking_client(runs_dir=tmp_path / name)
            uris.append(client.tracking_uri)  # MLflow checked the copy's schema revision
            run = client.create_run("0")
            client.log_metric(run.info.run_id, "score", 1.0)
            default = client.get_experiment("0").artifact_location
            assert Path(default.removeprefix("file://")).parent == Path.cwd() / "mlruns"
            assert client.get_run(run.info.run_id).data.metrics == {"score": 1.0}
            assert (tmp_path / name / "mlflow.db").is_file()
    finally:
        logger.removeHandler(migrations)
    # The template was migrated once; the two stores were copied from it.
    assert migrations.runs == 1
    assert len(list((tmp_path / "cache" / "mlflow-store").glob("mlflow-*.db"))) == 1
    # An existing store is never replaced.
    assert not dspex.integrations.mlflow._tracking.seed_sqlite_store(uris[0])
