"""Model registry helpers that the nightly and promotion flows build on.

:func:`register` is idempotent per run, so a flow that crashes after registering and is
re-run does not create a second version for the same run. Aliases (``champion``,
``challenger``) are how services find the version to serve: ``models:/qa@champion``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dspex.errors import UserError
from dspex.integrations.mlflow._imports import import_mlflow

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["get_version_by_alias", "register", "set_alias"]

# Set on versions made by ``register``: which of the run's models the version is.
ARTIFACT_PATH_TAG = "dspex.artifact_path"
_FAILED = "FAILED_REGISTRATION"


def register(
    run_id: str,
    name: str,
    *,
    artifact_path: str = "program",
    tags: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Register the model logged as ``artifact_path`` in run ``run_id`` as a version of
    ``name``, or return the version already registered from that run.

    Idempotent per run: a re-run after a crash gets the existing version back (with
    ``tags`` applied again) instead of a duplicate. Two *concurrent* calls for the same run
    may still both create a version; run one registration step per run.

    Args:
        run_id: the run that logged the model.
        name: the registered model's name (created if missing).
        artifact_path: the ``name`` the model was logged under in that run.
        tags: tags to set on the version.

    Example:
        >>> import dspex.mlflow
        >>> v = dspex.mlflow.register(run.info.run_id, "qa")  # doctest: +SKIP
        >>> dspex.mlflow.set_alias("qa", "champion", v.version)  # doctest: +SKIP
    """
    import_mlflow()
    import mlflow

    if not run_id or not name:
        raise UserError("register() needs a run_id and a registered model name.")
    client = mlflow.MlflowClient()
    version = _version_from_run(client, name, run_id, artifact_path)
    if version is None:
        version = mlflow.register_model(
            f"runs:/{run_id}/{artifact_path}",
            name,
            tags={ARTIFACT_PATH_TAG: artifact_path},
        )
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, str(version.version), key, str(value))
    return client.get_model_version(name, str(version.version))


def _version_from_run(
    client: Any, name: str, run_id: str, artifact_path: str
) -> ModelVersion | None:
    """The oldest live version of ``name`` registered from ``artifact_path`` of ``run_id``."""
    if "'" in name or "'" in run_id:
        raise UserError(f"Registered model names and run ids cannot contain quotes: {name!r}.")
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    matches = [
        v
        for v in found
        if v.status != _FAILED and v.tags.get(ARTIFACT_PATH_TAG, artifact_path) == artifact_path
    ]
    return min(matches, key=lambda v: int(v.version)) if matches else None


def set_alias(name: str, alias: str, version: int | str) -> None:
    """Point ``alias`` of registered model ``name`` at ``version`` (moving it if set).

    Example:
        >>> import dspex.mlflow
        >>> dspex.mlflow.set_alias("qa", "champion", 3)  # doctest: +SKIP
    """
    import_mlflow()
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))


def get_version_by_alias(name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or ``None`` if the alias or the model is missing.

    Example:
        >>> import dspex.mlflow
        >>> champion = dspex.mlflow.get_version_by_alias("qa", "champion")  # doctest: +SKIP
        >>> champion.version if champion else None  # doctest: +SKIP
        '3'
    """
    import_mlflow()
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    client = mlflow.MlflowClient()
    try:
        model = client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    # A missing alias is reported as a generic invalid parameter by some backends, so look
    # it up on the model instead of interpreting that error.
    version = model.aliases.get(alias)
    return None if version is None else client.get_model_version(name, str(version))
