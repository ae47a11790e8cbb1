"""``dspex.mlflow``: log, load and register dspex programs as MLflow models.

* :func:`log_model` / :func:`save_model` store a program as its JSON state plus the code
  reference that rebuilds it, in an MLmodel with a ``dspex`` flavor and a
  ``python_function`` flavor whose loader module reads that JSON: no pickle, no secrets.
* :func:`load_model` returns the dspex program; ``mlflow.pyfunc.load_model(uri)`` returns a
  pyfunc model whose ``predict`` runs it on a DataFrame or a list of dicts.
* :func:`register`, :func:`find_version`, :func:`promote`, :func:`set_alias`,
  :func:`get_version_by_alias`: the registry steps of the nightly and promotion flows
  (``register`` is idempotent per run).
* :func:`configure_tracking`, :func:`tracking_client`, :func:`ensure_experiment`: the
  embedded SQLite backend under the runs directory by default, a tracking server by
  configuration.
* :func:`autolog`: every program call as an MLflow trace (the UI's Traces tab,
  ``mlflow.search_traces()``), linked to the active or optimization run.

The one public MLflow API of dspex (``dspex.integrations.mlflow`` is its implementation);
see ``docs/mlflow.md``. Importing this module does not import MLflow (each function does,
when called).

Example:
    >>> import dspex.mlflow
    >>> dspex.mlflow.FLAVOR_NAME
    'dspex'
"""

from dspex.integrations.mlflow._flavor import FLAVOR_NAME, load_model, log_model, save_model
from dspex.integrations.mlflow._registry import (
    find_version,
    get_version_by_alias,
    promote,
    register,
    set_alias,
)
from dspex.integrations.mlflow._tracing import autolog
from dspex.integrations.mlflow._tracking import (
    configure_tracking,
    embedded_tracking_uri,
    ensure_experiment,
    tracking_client,
)

__all__ = [
    "FLAVOR_NAME",
    "autolog",
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
    "tracking_client",
]
