"""The one place MLflow is first imported, so that its import-time noise stays out of the way.

Two MLflow modules warn when they are imported, about MLflow's own code: ``mlflow.pyfunc``
(an ``Any`` in its ResponsesAgent types) and the SQL tracking store (a SQLAlchemy loader
strategy that SQLAlchemy 2.1 deprecates, raised while configuring mappers). Nothing a caller
can act on; under ``-W error`` the second one even leaves the store's mappers broken for the
rest of the process. So both are imported once here, with exactly those warnings ignored.
"""

from __future__ import annotations

import sys
import warnings
from urllib.parse import urlparse

__all__ = ["import_mlflow", "import_sql_store"]

_PYFUNC_NOISE = r".*Any type hint is inferred as AnyType"
_SQL_STORE_NOISE = r".*The ``noload`` loader strategy is deprecated"
_SQL_STORE = "mlflow.store.tracking.sqlalchemy_store"
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def import_mlflow() -> None:
    """Import ``mlflow`` and ``mlflow.pyfunc`` (and the SQL store, if the tracking URI is a
    database) once, without their import-time warnings."""
    if "mlflow.pyfunc" not in sys.modules:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PYFUNC_NOISE, category=UserWarning)
            import mlflow.pyfunc
    import mlflow

    import_sql_store(mlflow.get_tracking_uri())


def import_sql_store(tracking_uri: str) -> None:
    """Import MLflow's SQL tracking store if ``tracking_uri`` names a database."""
    if _SQL_STORE in sys.modules:
        return
    scheme = urlparse(tracking_uri).scheme.split("+")[0]
    if scheme not in _DB_SCHEMES:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SQL_STORE_NOISE, category=DeprecationWarning)
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
