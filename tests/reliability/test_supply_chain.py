"""CI installs from a hash-locked file and refuses unexpected ``.pth`` files."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "ci.lock"
CHECK = ROOT / ".ci" / "check_pth.py"


def _locked() -> dict[str, str]:
    """Locked name -> version, asserting every requirement carries at least one hash."""
    text = LOCK.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    locked = {}
    for entry in entries:
        first = entry.splitlines()[0]
        name, _, version = first.split(" ")[0].partition("==")
        assert version, f"{first!r} is not pinned with =="
        assert "--hash=sha256:" in entry, f"{name} has no hash"
        locked[re.sub(r"[-_.]+", "-", name).lower()] = version
    return locked


def test_the_ci_lock_pins_every_dependency_with_hashes() -> None:
    locked = _locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in wanted:
        name = re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in locked, f"{name} is not in {LOCK}"
    # Compromised releases never enter the lock.
    assert locked["litellm"] not in ("1.82.7", "1.82.8")


def test_ci_runs_the_locked_install_and_the_pth_check() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "--require-hashes -r requirements/ci.lock" in ci
    # The installer that reads the lock is itself installed from hashes.
    assert "--require-hashes -r requirements/tools.lock" in ci
    tools = (ROOT / "requirements" / "tools.lock").read_text()
    assert re.search(r"^uv==[\d.]+ \\\n\s+--hash=sha256:", tools, re.M), tools[:200]
    assert "check_pth.py" in ci


def _check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(directory)], capture_output=True, text=True
    )


def test_an_unexpected_pth_file_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "distutils-precedence.pth").write_text(
        "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os.environ.get(var, 'local')"
        " == 'local'; enabled and __import__('_distutils_hack').add_shim(); \n"
    )
    (tmp_path / "__editable__.dspex-0.1.0.pth").write_text(
        "import __editable___dspex_0_1_0_finder; __editable___dspex_0_1_0_finder.install()"
    )
    assert _check(tmp_path).returncode == 0
    (tmp_path / "litellm_init.pth").write_text("import base64; exec(base64.b64decode('...'))\n")
    out = _check(tmp_path)
    assert out.returncode == 1
    assert "litellm_init.pth" in out.stderr


def test_an_allowed_name_with_other_content_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "distutils-precedence.pth").write_text("import os; os.system('curl ...')\n")
    assert _check(tmp_path).returncode == 1
