"""Sandbox tests run the real Deno and Pyodide; CI must have them (see .ci/run).

They fail when Deno or Pyodide is missing, unless ``DSPEX_SANDBOX_OPTIONAL=1`` says this
machine may skip them (CI never sets it, so a missing sandbox fails CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dspex.sandbox import PythonInterpreter, SandboxUnavailableError
from dspex.sandbox._deno import find_deno, find_pyodide, resolve_deno_dir


@pytest.fixture(scope="session")
def sandbox_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One start-up snapshot for the session: only the first interpreter starts slowly."""
    try:
        find_pyodide(resolve_deno_dir(find_deno()))
    except SandboxUnavailableError as exc:
        if os.environ.get("DSPEX_SANDBOX_OPTIONAL") == "1":
            pytest.skip(f"the sandbox is unavailable and DSPEX_SANDBOX_OPTIONAL=1: {exc}")
        pytest.fail(f"the sandbox is unavailable (set DSPEX_SANDBOX_OPTIONAL=1 to skip): {exc}")
    return tmp_path_factory.mktemp("sandbox-cache")


@pytest.fixture(scope="module")
def interpreter(sandbox_cache: Path) -> Iterator[PythonInterpreter]:
    with PythonInterpreter(cache_dir=sandbox_cache, timeout=60) as interpreter:
        yield interpreter
