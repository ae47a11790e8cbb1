"""Where runs are tracked: the embedded SQLite backend by default, a server by configuration.

The embedded default keeps everything under the runs directory (``dspex._paths.runs_dir``)::

    <runs>/mlflow.db        the tracking and registry database (SQLite)
    <runs>/mlartifacts/     artifacts, one folder per experiment

MLflow on a database backend without a server stores artifacts under ``./mlruns`` of
whatever directory the process started in, so :func:`ensure_experiment` pins each
experiment's artifact location under the runs directory instead.

A new SQLite store that :func:`tracking_client` or :func:`ensure_experiment` opens starts
as a copy of a template: an empty database MLflow itself created
and migrated once per MLflow version (``<cache>/mlflow-store/mlflow-<version>.db``, where
``<cache>`` is ``$DSPEX_CACHE_DIR`` or ``~/.cache/dspex``). Running MLflow's ~100 schema
migrations for every new runs directory costs ~1 s of CPU; copying the file costs
milliseconds, and MLflow still checks the copy's schema revision when it opens it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from dspex import _redact
from dspex._paths import runs_dir as _runs_dir
from dspex.errors import ConfigurationError
from dspex.integrations.mlflow._imports import import_mlflow, import_sql_store

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "check_server",
    "configure_tracking",
    "embedded_tracking_uri",
    "ensure_experiment",
    "seed_sqlite_store",
    "tracking_client",
    "warm_model_logging",
]

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# Backends whose server decides where artifacts go; any other URI is served in-process.
_SERVER_SCHEMES = frozenset({"http", "https", "databricks", "databricks-uc", "uc"})
_ENV = "MLFLOW_TRACKING_URI"
# ``mlflow.set_tracking_uri`` also writes $MLFLOW_TRACKING_URI (for subprocesses). The URI
# this module chose itself is remembered so that a later call does not mistake MLflow's
# write for the user's setting and stick to a stale runs directory.
_chosen_here: str | None = None


def embedded_tracking_uri(runs_dir: str | os.PathLike[str] | None = None) -> str:
    """``sqlite:///<runs>/mlflow.db``: the embedded backend's URI.

    Example:
        >>> embedded_tracking_uri("/srv/dspex-runs")
        'sqlite:////srv/dspex-runs/mlflow.db'
    """
    return f"sqlite:///{_runs_dir(runs_dir) / DB_FILE}"


def configure_tracking(
    tracking_uri: str | None = None,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    allow_insecure: bool = False,
) -> str:
    """Point MLflow at a tracking backend and return its URI.

    ``tracking_uri`` wins, then ``$MLFLOW_TRACKING_URI``, then the embedded SQLite
    database under the runs directory (created on first use).

    An ``http(s)`` tracking server is checked first, once per process and URI: a plain
    ``http://`` URI to another host without credentials (``MLFLOW_TRACKING_TOKEN``, or
    ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD``) is refused before any
    connection unless ``allow_insecure`` or ``DSPEX_ALLOW_INSECURE_TRACKING=1``; then the
    server must answer ``GET /health`` within a few seconds (MLflow's own retries take
    minutes to give up on a closed port).

    Args:
        tracking_uri: e.g. ``"http://mlflow.internal:5000"`` or ``"sqlite:///mlflow.db"``.
        runs_dir: the runs directory for the embedded default (``$DSPEX_RUNS_DIR`` or
            ``./dspex-runs`` otherwise).
        allow_insecure: accept a plain-http, credential-less server on another host.

    Raises:
        ConfigurationError: the server is refused or unreachable; the message names the
            URI (credentials redacted) and what to do.

    Example:
        >>> import dspex.mlflow
        >>> dspex.mlflow.configure_tracking()  # doctest: +SKIP
        'sqlite:////home/me/project/dspex-runs/mlflow.db'
    """
    import_mlflow()
    import mlflow

    global _chosen_here
    env = os.environ.get(_ENV) or None
    if env is not None and env == _chosen_here:
        env = None
    if tracking_uri:
        uri = _chosen_here = tracking_uri
    elif env:
        uri, _chosen_here = env, None
    else:
        _runs_dir(runs_dir).mkdir(parents=True, exist_ok=True)
        uri = _chosen_here = embedded_tracking_uri(runs_dir)
    check_server(uri, allow_insecure=allow_insecure)
    mlflow.set_tracking_uri(uri)
    import_sql_store(uri)
    return uri


_TEMPLATE_DIR = "mlflow-store"


def seed_sqlite_store(uri: str) -> bool:
    """Create the SQLite database ``uri`` names, if it does not exist yet, as a copy of the
    migrated template (made first if missing); True if it did. Any other URI is left alone.

    Example:
        >>> seed_sqlite_store("sqlite:////tmp/runs/mlflow.db")  # doctest: +SKIP
        True
    """
    path = _sqlite_path(uri)
    if path is None or path.exists():
        return False
    template = _store_template()
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    shutil.copyfile(template, staged)
    try:
        os.link(staged, path)  # never over a store another process created meanwhile
    except FileExistsError:
        return False
    finally:
        staged.unlink()
    return True


def _sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI; None for anything else (in-memory, query options)."""
    parts = urlparse(uri)
    if parts.scheme != "sqlite" or parts.netloc or parts.query or not parts.path:
        return None
    name = parts.path[1:]  # sqlite:///rel.db → "rel.db"; sqlite:////abs.db → "/abs.db"
    return None if name in ("", ":memory:") else Path(name).resolve()


def _store_template() -> Path:
    """The migrated empty store for this MLflow version, created on first use."""
    import mlflow

    cache = os.environ.get("DSPEX_CACHE_DIR")
    root = Path(cache) if cache else Path.home() / ".cache" / "dspex"
    template = root / _TEMPLATE_DIR / f"mlflow-{mlflow.__version__}.db"
    if template.exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    staged = template.with_name(f".{template.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    # What `mlflow db upgrade` does to an empty database: create the tables, run every
    # migration. No experiment is made: MLflow creates the default one, with this store's
    # artifact root, when it opens the copy.
    from mlflow.store.db import utils

    url = f"sqlite:///{staged}"
    engine = utils.create_sqlalchemy_engine_with_retry(url)  # type: ignore[no-untyped-call]
    try:
        utils._initialize_tables(engine)  # type: ignore[no-untyped-call]
    finally:
        engine.dispose()
    os.replace(staged, template)  # concurrent builders each write a whole, equal file
    return template


def warm_model_logging() -> None:
    """Do now what logging a model with MLflow does first: map every installed distribution
    to its modules (MLflow checks the model's pip requirements against them; ~1.5 s of CPU
    with a few hundred packages, cached by MLflow for the process). The optimization flows
    run it on a background thread while LM calls wait, so the end of a run does not pay it.

    Example:
        >>> threading.Thread(target=warm_model_logging, daemon=True).start()  # doctest: +SKIP
    """
    try:  # imported with mlflow.pyfunc (configure_tracking imports it)
        from mlflow.utils import requirements_utils

        requirements_utils._init_modules_to_packages_map()  # type: ignore[no-untyped-call]
    except (ImportError, AttributeError):  # another MLflow version: the save maps them itself
        pass


_ALLOW_INSECURE_ENV = "DSPEX_ALLOW_INSECURE_TRACKING"
_PROBE_TIMEOUT_S = 3.0
_reachable: set[str] = set()  # servers that answered once: not probed again


def check_server(uri: str, *, allow_insecure: bool = False) -> None:
    """Refuse an insecure or unreachable ``http(s)`` tracking server (see
    :func:`configure_tracking`); any other URI passes."""
    parts = urlparse(uri)
    if parts.scheme not in ("http", "https") or uri in _reachable:
        return
    shown = _redacted(uri)
    host = parts.hostname or ""
    insecure_ok = allow_insecure or os.environ.get(_ALLOW_INSECURE_ENV, "") in ("1", "true")
    if parts.scheme == "http" and not _loopback(host) and not _credentials() and not insecure_ok:
        raise ConfigurationError(
            f"Tracking URI {shown} is plain http to another host with no credentials: "
            "anyone on the path can read and change runs and registered models. Use https, "
            "set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and "
            f"MLFLOW_TRACKING_PASSWORD), or, on a network you trust, set {_ALLOW_INSECURE_ENV}=1 "
            "(or pass allow_insecure=True)."
        )
    probe = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl().rstrip("/")
    try:
        with urllib.request.urlopen(probe + "/health", timeout=_PROBE_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        pass  # it answered: a server is there (auth and routes are MLflow's business)
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigurationError(
            f"MLflow tracking server {shown} did not answer within {_PROBE_TIMEOUT_S:g} s "
            f"({type(e).__name__}: {_redact.redact_text(str(reason))}). Start the server (mlflow "
            "server --host 127.0.0.1 --port 5000), fix MLFLOW_TRACKING_URI / --tracking-uri, "
            "or unset it to use the embedded SQLite backend under the runs directory."
        ) from None
    _reachable.add(uri)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials() -> bool:
    env = os.environ
    token = bool(env.get("MLFLOW_TRACKING_TOKEN"))
    return token or bool(
        env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD")
    )


def _redacted(uri: str) -> str:
    """``uri`` with any ``user:password@`` replaced."""
    parts = urlparse(uri)
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def tracking_client(
    tracking_uri: str | None = None, *, runs_dir: str | os.PathLike[str] | None = None
) -> MlflowClient:
    """An ``MlflowClient`` for the backend :func:`configure_tracking` chooses.

    It configures tracking first (the same arguments and precedence), so the process's
    MLflow URI, which :func:`log_model` and the registry helpers use, is that backend too.
    Use the client with explicit run ids from worker threads, where MLflow's active run is
    not visible.

    Example:
        >>> import dspex.mlflow
        >>> client = dspex.mlflow.tracking_client("sqlite:///mlflow.db")  # doctest: +SKIP
        >>> client.set_tag(run_id, "reviewed", "yes")  # doctest: +SKIP
    """
    import mlflow

    uri = configure_tracking(tracking_uri, runs_dir=runs_dir)
    seed_sqlite_store(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def ensure_experiment(name: str, *, runs_dir: str | os.PathLike[str] | None = None) -> str:
    """The id of experiment ``name`` on the current tracking backend, created if missing.

    On a backend without a server (SQLite, a database URI) a new experiment's artifacts go
    under ``<runs>/mlartifacts/<name>``; a tracking server uses its own artifact root. A
    deleted experiment of that name is restored. Safe to call from concurrent processes.

    Example:
        >>> import mlflow, dspex.mlflow
        >>> dspex.mlflow.configure_tracking()  # doctest: +SKIP
        >>> experiment_id = dspex.mlflow.ensure_experiment("qa-nightly")  # doctest: +SKIP
        >>> with mlflow.start_run(experiment_id=experiment_id):  # doctest: +SKIP
        ...     mlflow.log_metric("dev_accuracy", 0.81)
    """
    import_mlflow()
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    seed_sqlite_store(mlflow.get_tracking_uri())
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    location = None
    if urlparse(mlflow.get_tracking_uri()).scheme not in _SERVER_SCHEMES:
        location = _artifact_location(name, runs_dir)
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException as e:
        # Another process created it between our lookup and our create.
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def _artifact_location(name: str, runs_dir: str | os.PathLike[str] | None) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "experiment"
    path: Path = _runs_dir(runs_dir) / ARTIFACTS_DIR / slug
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()
