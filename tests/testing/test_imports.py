"""Importing the test doubles stays light: no litellm, pyarrow or server frameworks."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("litellm", "prefect", "mlflow", "duckdb", "pyarrow", "torch", "optuna")


def test_import_dspex_testing_and_datasets_is_light() -> None:
    code = (
        "import json, sys\n"
        "import dspex.testing, dspex.datasets, dspex.testing.server\n"
        "from dspex.datasets import load_task\n"
        "load_task('arithmetic'); load_task('factqa')\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_public_surface() -> None:
    import dspex.datasets
    import dspex.testing

    for module in (dspex.testing, dspex.datasets):
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)
