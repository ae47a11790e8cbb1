"""dspex installs one top-level package, so a user's own ``tasks.py``, ``flows.py`` or
``deployments/`` cannot collide with its flows and tasks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.fresh import run_fresh

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("dspex-*.whl")
    return found


def _record(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        return [line.split(",")[0] for line in zf.read(name).decode().splitlines() if line]


def test_the_wheel_installs_no_top_level_name_but_dspex(wheel: Path) -> None:
    paths = _record(wheel)
    tops = {p.split("/")[0] for p in paths}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"dspex"}
    # The flows, tasks and deployments are inside the dspex namespace.
    for inside in (
        "dspex/flows/local.py",
        "dspex/flows/mipro.py",
        "dspex/tasks/_common.py",
        "dspex/deployments/__init__.py",
        "dspex/deployments/prefect.yaml",
        "dspex/teleprompt/_optimizers.py",
    ):
        assert inside in paths


def test_the_wheel_registers_the_test_lms_as_litellm_providers(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(name).decode()
    assert "[dspex.litellm_providers]" in text
    assert "dspex-sim = dspex.testing:register_litellm_providers" in text


COMPILE = """
import json
import dspex
from dspex.evaluate import exact_match
from dspex.testing import SimulatedLM
from dspex.datasets import load_task

import tasks, flows, deployments  # the user's own modules, first on sys.path
assert tasks.MINE and flows.MINE and deployments.MINE

splits = load_task("arithmetic").split(train=12, dev=8, seed=0)
train, dev = splits.train, splits.dev
opt = dspex.BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=2)
best = opt.compile(
    dspex.ChainOfThought("question -> answer: int"),
    trainset=train,
    valset=dev,
    lm=SimulatedLM(task="arithmetic"),
    runs_dir="runs",
)
print(json.dumps({"demos": len(best.predict.demos), "score": opt.last_result.score}))
"""


@pytest.mark.slow
def test_a_project_with_its_own_tasks_flows_and_deployments_compiles(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "deployments").mkdir(parents=True)
    (project / "tasks.py").write_text("MINE = True\n")
    (project / "flows.py").write_text("MINE = True\n")
    (project / "deployments" / "__init__.py").write_text("MINE = True\n")
    code = "import sys; sys.path.insert(0, '')\n" + textwrap.dedent(COMPILE)
    out = run_fresh(code, cwd=project, env={**_env(tmp_path)})
    assert out["demos"] == 2
    assert out["score"] is not None


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["DSPEX_RUNS_DIR"] = str(tmp_path / "runs")
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env.pop("PREFECT_API_URL", None)
    return env
