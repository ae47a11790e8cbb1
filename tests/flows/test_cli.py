"""The CLI runs the flows: dspex optimize CONFIG.toml, dspex evaluate CONFIG.toml, dspex runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dspex.cli import main

pytestmark = pytest.mark.slow

OPTIMIZE = """
program = "cot:question -> answer: int"
optimizer = "BootstrapFewShotWithRandomSearch"
[settings]
num_candidate_programs = 1
max_bootstrapped_demos = 2
max_labeled_demos = 2
[trainset]
task = "arithmetic"
train_size = 20
dev_size = 30
[valset]
task = "arithmetic"
split = "dev"
train_size = 20
dev_size = 30
[lm]
model = "dspex-sim/arithmetic"
[tracking]
experiment = "cli"
model_name = "cli-qa"
alias = "champion"
"""

EVALUATE = """
program = "models:/cli-qa@champion"
[dataset]
task = "arithmetic"
split = "test"
train_size = 20
dev_size = 30
[lm]
model = "dspex-sim/arithmetic"
[tracking]
experiment = "cli"
"""


def test_optimize_evaluate_and_list_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "opt.toml").write_text(OPTIMIZE)
    (tmp_path / "eval.toml").write_text(EVALUATE)
    runs = str(tmp_path / "runs")
    assert main(["optimize", str(tmp_path / "opt.toml"), "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    assert "zero-shot" in out and "registered version: 1" in out
    assert main(["evaluate", str(tmp_path / "eval.toml"), "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    assert "score:" in out and "(0 errors)" in out
    assert main(["runs", "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    assert "BootstrapFewShotWithRandomSearch" in out and "evaluate" in out


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.toml").write_text('program = "cot:q -> a"\n[trainset]\nnope = 1\n')
    assert main(["optimize", str(tmp_path / "bad.toml")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["optimize", str(tmp_path / "missing.toml")]) == 2


def test_promote_dry_run_then_promote_then_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    config = str(Path(__file__).resolve().parents[2] / "examples" / "promote_arithmetic.toml")
    runs = str(tmp_path / "runs")
    assert main(["promote", config, "--runs-dir", runs, "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["champion"] is None and plan["action"].startswith("optimize")

    assert main(["promote", config, "--runs-dir", runs]) == 0
    assert "arithmetic-qa v1: promoted (there was no champion)" in capsys.readouterr().out

    assert main(["promote", config, "--runs-dir", runs, "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["action"] == "skip" and plan["decision"] == "unchanged"
    assert plan["champion"]["version"] == "1"


def test_optimize_runs_miprov2_from_a_config(tmp_path: Path) -> None:
    (tmp_path / "mipro.toml").write_text(
        OPTIMIZE.replace('optimizer = "BootstrapFewShotWithRandomSearch"', 'optimizer = "MIPROv2"')
        .replace(
            "num_candidate_programs = 1", "num_candidates = 3\nnum_trials = 2\nminibatch_size = 10"
        )
        .replace('model_name = "cli-qa"', 'model_name = "cli-mipro"')
    )
    assert main(["optimize", str(tmp_path / "mipro.toml"), "--runs-dir", str(tmp_path)]) == 0
