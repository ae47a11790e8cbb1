"""Registry helpers: ``register`` is idempotent per run; aliases are set, moved and looked up."""

from __future__ import annotations

import pytest

import dspex.mlflow
from tests.integrations.conftest import Tracking
from tests.integrations.programs import ArithmeticQA


def _logged_run(tracking: Tracking, name: str = "program") -> str:
    import mlflow

    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        dspex.mlflow.log_model(ArithmeticQA(), name=name)
    return run.info.run_id


def test_register_twice_for_one_run_makes_one_version(tracking: Tracking) -> None:
    import mlflow

    run_id = _logged_run(tracking)
    first = dspex.mlflow.register(run_id, "qa-registry", tags={"dev_accuracy": 0.8})
    again = dspex.mlflow.register(run_id, "qa-registry", tags={"attempt": 2})

    assert str(again.version) == str(first.version)
    assert again.run_id == run_id
    assert again.tags["dev_accuracy"] == "0.8" and again.tags["attempt"] == "2"
    versions = mlflow.MlflowClient().search_model_versions("name = 'qa-registry'")
    assert [str(v.version) for v in versions if v.run_id == run_id] == [str(first.version)]


def test_register_returns_the_version_log_model_registered(tracking: Tracking) -> None:
    import mlflow

    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        info = dspex.mlflow.log_model(ArithmeticQA(), registered_model_name="qa-logged")
    version = dspex.mlflow.register(run.info.run_id, "qa-logged")
    assert str(version.version) == str(info.registered_model_version)


def test_another_run_gets_a_new_version(tracking: Tracking) -> None:
    one = dspex.mlflow.register(_logged_run(tracking), "qa-two-runs")
    two = dspex.mlflow.register(_logged_run(tracking), "qa-two-runs")
    assert int(two.version) == int(one.version) + 1


def test_two_models_of_one_run_are_two_versions(tracking: Tracking) -> None:
    import mlflow

    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        dspex.mlflow.log_model(ArithmeticQA(), name="baseline")
        dspex.mlflow.log_model(ArithmeticQA(), name="program")
    run_id = run.info.run_id
    baseline = dspex.mlflow.register(run_id, "qa-pair", artifact_path="baseline")
    program = dspex.mlflow.register(run_id, "qa-pair", artifact_path="program")
    assert baseline.version != program.version
    assert dspex.mlflow.register(run_id, "qa-pair").version == program.version


def test_aliases_are_set_moved_and_missing_ones_are_none(tracking: Tracking) -> None:
    one = dspex.mlflow.register(_logged_run(tracking), "qa-alias")
    two = dspex.mlflow.register(_logged_run(tracking), "qa-alias")

    assert dspex.mlflow.get_version_by_alias("qa-alias", "champion") is None
    dspex.mlflow.set_alias("qa-alias", "champion", one.version)
    found = dspex.mlflow.get_version_by_alias("qa-alias", "champion")
    assert found is not None and found.version == one.version
    dspex.mlflow.set_alias("qa-alias", "champion", int(two.version))
    moved = dspex.mlflow.get_version_by_alias("qa-alias", "champion")
    assert moved is not None and moved.version == two.version
    assert dspex.mlflow.get_version_by_alias("no-such-model", "champion") is None


def test_register_checks_its_arguments(tracking: Tracking) -> None:
    with pytest.raises(dspex.UserError):
        dspex.mlflow.register("", "qa")
    with pytest.raises(dspex.UserError, match="quotes"):
        dspex.mlflow.register("abc", "it's")
