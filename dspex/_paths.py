"""Where dspex keeps what lasts: the runs directory and what lives under it.

``<runs>/traces/`` (Parquet), ``<runs>/mlflow.db`` and ``<runs>/mlartifacts/`` (the embedded
MLflow backend), ``<runs>/prefect-results/`` (persisted task results), ``<runs>/optuna/`` (studies).
``$DSPEX_RUNS_DIR`` overrides the default ``./dspex-runs``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["runs_dir"]


def runs_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The runs directory: ``explicit``, else ``$DSPEX_RUNS_DIR``, else ``./dspex-runs``."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("DSPEX_RUNS_DIR")
    return Path(env).expanduser().resolve() if env else Path("dspex-runs").resolve()
