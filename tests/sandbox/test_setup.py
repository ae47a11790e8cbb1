"""A missing Deno or Pyodide is a clear setup error, never code run on the host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dspex
from dspex.sandbox import PYODIDE_VERSION, PythonInterpreter, SandboxUnavailableError


def test_a_missing_deno_says_how_to_install_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran-on-host"
    interpreter = PythonInterpreter(deno=tmp_path / "no-such-deno")
    with pytest.raises(SandboxUnavailableError, match="pip install deno") as caught:
        interpreter(f"open({str(marker)!r}, 'w').write('x')")
    assert isinstance(caught.value, dspex.ConfigurationError)
    assert not marker.exists() and interpreter.pid is None


def test_a_deno_not_on_path_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError, match="Deno was not found"):
        PythonInterpreter(deno="deno-that-is-not-on-path").start()


def test_a_deno_dir_without_pyodide_says_how_to_fill_it(
    tmp_path: Path, sandbox_cache: Path
) -> None:
    empty = tmp_path / "empty-deno-dir"
    interpreter = PythonInterpreter(deno_dir=empty, cache_dir=sandbox_cache)
    with pytest.raises(SandboxUnavailableError) as caught:
        interpreter("1")
    message = str(caught.value)
    assert f"Pyodide {PYODIDE_VERSION} is not in Deno's cache (DENO_DIR={empty})" in message
    assert "python -m dspex.sandbox prefetch" in message


def test_prefetch_reports_a_missing_deno(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dspex.sandbox", "prefetch", "--deno", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "pip install deno" in result.stderr


@pytest.mark.slow
def test_a_damaged_start_up_snapshot_is_replaced(tmp_path: Path, sandbox_cache: Path) -> None:
    with PythonInterpreter(cache_dir=tmp_path) as interpreter:
        interpreter.start()  # a first start: writes the snapshot
    (snapshot,) = tmp_path.glob("*.bin")
    good_size = snapshot.stat().st_size
    snapshot.write_bytes(b"\0damaged" * 64)
    with PythonInterpreter(cache_dir=tmp_path) as interpreter:
        assert interpreter("6 * 7") == 42
    assert snapshot.stat().st_size == good_size
