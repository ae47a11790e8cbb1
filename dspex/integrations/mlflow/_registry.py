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

__all__ = [
    "MANAGED_ALIAS_TAG",
    "check_alias_unmanaged",
    "find_version",
    "get_version_by_alias",
    "promote",
    "register",
    "set_alias",
]

# Set on versions made by ``register``: which of the run's models the version is.
ARTIFACT_PATH_TAG = "dspex.artifact_path"
# Set on versions registered with a key: one version per key.
KEY_TAG = "dspex.registration_key"
_FAILED = "FAILED_REGISTRATION"
# Set on a registered model by ``promote``, one per alias it moves: ``<tag><alias>``.
MANAGED_ALIAS_TAG = "dspex.managed_alias."
_MANAGED_BY = "promotion gate: dspex promote CONFIG.toml"


def register(
    run_id: str,
    name: str,
    *,
    artifact_path: str = "program",
    tags: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> ModelVersion:
    """Register the model logged as ``artifact_path`` in run ``run_id`` as a version of
    ``name``, or return the version already registered from that run (or with that ``key``).

    Idempotent per run: a re-run after a crash gets the existing version back (with
    ``tags`` applied again) instead of a duplicate. With ``key`` (e.g. a hash of the inputs
    that produced the model) it is idempotent per key, even when the re-run logged the model
    in a new run: the key is a version tag written together with the version, so a crash
    can never leave a version without it. Two *concurrent* calls may still both create a
    version; run one registration step per model at a time.

    Args:
        run_id: the run that logged the model.
        name: the registered model's name (created if missing).
        artifact_path: the ``name`` the model was logged under in that run.
        tags: tags to set on the version (at creation, so they are there from the start).
        key: one version per key (the ``dspex.registration_key`` tag).

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
    if key is not None:
        version = find_version(name, KEY_TAG, key)
    else:
        version = _version_from_run(client, name, run_id, artifact_path)
    if version is None:
        created = {ARTIFACT_PATH_TAG: artifact_path, **({KEY_TAG: key} if key else {})}
        created.update({k: str(v) for k, v in (tags or {}).items()})
        version = mlflow.register_model(f"runs:/{run_id}/{artifact_path}", name, tags=created)
    else:
        for k, value in (tags or {}).items():
            client.set_model_version_tag(name, str(version.version), k, str(value))
    return client.get_model_version(name, str(version.version))


def find_version(name: str, tag: str, value: str) -> ModelVersion | None:
    """The oldest live version of ``name`` whose tag ``tag`` is ``value``, if any.

    Example:
        >>> import dspex.mlflow
        >>> dspex.mlflow.find_version("qa", "dspex.registration_key", "3f2a")  # doctest: +SKIP
    """
    import_mlflow()
    import mlflow

    for text in (name, tag, value):
        if "'" in text or "`" in text:
            raise UserError(f"Model names, tags and values cannot contain quotes: {text!r}.")
    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{name}' and tags.`{tag}` = '{value}'")
    live = [v for v in found if v.status != _FAILED]
    return min(live, key=lambda v: int(v.version)) if live else None


def promote(
    name: str, version: int | str, *, alias: str = "champion", previous: str | None = "previous"
) -> str | None:
    """Point ``alias`` at ``version``, first pointing ``previous`` at the version ``alias``
    pointed at; returns that version (``None`` if there was none).

    The order makes a crash harmless: until the last step, ``alias`` still names the old
    version, so services keep serving it, and calling ``promote`` again finishes the job.

    Example:
        >>> import dspex.mlflow
        >>> dspex.mlflow.promote("qa", 4)  # doctest: +SKIP
        '3'
    """
    # Mark the aliases as the promotion gate's before moving them: from now on compile's
    # tracking alias and `dspex optimize` refuse to move them (see check_alias_unmanaged).
    client = _client()
    for managed in (alias, previous):
        if managed:
            client.set_registered_model_tag(name, MANAGED_ALIAS_TAG + managed, _MANAGED_BY)
    current = get_version_by_alias(name, alias)
    old = None if current is None else str(current.version)
    if old == str(version):
        return None  # already promoted (a re-run): keep @previous as it is
    if previous and old is not None:
        set_alias(name, previous, old)
    set_alias(name, alias, version)
    return old


def check_alias_unmanaged(name: str, alias: str) -> None:
    """Raise unless ``alias`` of ``name`` is free to move outside the promotion gate.

    :func:`promote` (the nightly's promotion) tags the registered model with
    ``dspex.managed_alias.<alias>``; such an alias moves only when a challenger beats its
    holder on the test split, i.e. through ``dspex promote CONFIG.toml``.

    Raises:
        UserError: the alias is managed by the promotion gate.
    """
    from mlflow.exceptions import MlflowException

    try:
        tags = _client().get_registered_model(name).tags
    except MlflowException:
        return  # no such model yet: nothing manages its aliases
    if MANAGED_ALIAS_TAG + alias in tags:
        raise UserError(
            f"models:/{name}@{alias} is managed by the promotion gate (the nightly flow's "
            f"`dspex promote`), so this run will not move it: a challenger replaces the "
            f"champion only if it beats it on the test split. Run `dspex promote CONFIG.toml` "
            f"to go through the gate, or register under another alias (e.g. "
            f"tracking={{'alias': 'candidate'}} / --alias candidate)."
        )


def _client() -> Any:
    import_mlflow()
    import mlflow

    return mlflow.MlflowClient()


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
