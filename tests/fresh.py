"""Run a snippet in a fresh Python process, as a service loading a registered model would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def run_fresh(
    code: str,
    *args: Any,
    cwd: Path,
    tracking_uri: str | None = None,
    cache_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> Any:
    """Run ``code`` with ``args`` (JSON-encoded) in a new interpreter and return the JSON its
    last stdout line holds; a non-zero exit fails with the process's stderr."""
    environ = {**(env if env is not None else os.environ)}
    environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    if tracking_uri is not None:
        environ["MLFLOW_TRACKING_URI"] = tracking_uri
    environ["DSPEX_CACHE_DIR"] = str(cache_dir or cwd / "fresh-cache")
    out = subprocess.run(
        [sys.executable, "-c", code, *(json.dumps(a) for a in args)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
