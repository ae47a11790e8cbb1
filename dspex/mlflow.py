"""``dspex.mlflow``: log, load and register dspex programs as MLflow models.

The public face of :mod:`dspex.integrations.mlflow`; see ``docs/mlflow.md``. Importing this
module does not import MLflow (each function does, when called).

Example:
    >>> import dspex.mlflow
    >>> qa = dspex.mlflow.load_model("models:/qa@champion")  # doctest: +SKIP
"""

from dspex.integrations.mlflow import (
    FLAVOR_NAME,
    configure_tracking,
    embedded_tracking_uri,
    ensure_experiment,
    find_version,
    get_version_by_alias,
    load_model,
    log_model,
    promote,
    register,
    save_model,
    set_alias,
)

__all__ = [
    "FLAVOR_NAME",
    "configure_tracking",
    "embedded_tracking_uri",
    "ensure_experiment",
    "find_version",
    "get_version_by_alias",
    "load_model",
    "log_model",
    "promote",
    "register",
    "save_model",
    "set_alias",
]
