"""The promotion gate: a better challenger becomes @champion, a worse one is rejected, an
unchanged one is skipped, and a crash between registering and moving the alias is
recovered by a re-run with one version in the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest

import dspex.mlflow
from dspex.flows.local import nightly
from dspex.integrations.mlflow import _registry
from dspex.optimize import NightlyParams

pytestmark = pytest.mark.slow

MODEL = "nightly-qa"


def _params(tmp_path: Path, optimizer: str, settings: dict[str, Any]) -> NightlyParams:
    data = {"task": "arithmetic", "train_size": 20, "dev_size": 30}
    return NightlyParams.model_validate(
        {
            "optimize": {
                "program": "cot:question -> answer: int",
                "optimizer": optimizer,
                "settings": settings,
                "trainset": data,
                "valset": {**data, "split": "dev"},
                "lm": {"model": "dspex-sim/arithmetic"},
                "tracking": {"experiment": "nightly"},
                "runs_dir": str(tmp_path),
            },
            "testset": {**data, "split": "test"},
            "promotion": {"model_name": MODEL, "margin": 1.0},
        }
    )


# A weak program (no demos) and a strong one (bootstrapped demos), on the simulated LM.
WEAK = ("LabeledFewShot", {"k": 0})
STRONG = (
    "BootstrapFewShotWithRandomSearch",
    {"num_candidate_programs": 1, "max_bootstrapped_demos": 3, "max_labeled_demos": 3},
)


def _versions() -> list[str]:
    found = mlflow.MlflowClient().search_model_versions(f"name='{MODEL}'")
    return sorted(str(v.version) for v in found)


def _alias(alias: str) -> str | None:
    v = dspex.mlflow.get_version_by_alias(MODEL, alias)
    return None if v is None else str(v.version)


def test_better_promoted_worse_rejected_unchanged_skipped(tmp_path: Path) -> None:
    first = nightly(_params(tmp_path, *STRONG))
    assert first["decision"] == "promoted" and first["reason"] == "there was no champion"
    assert _alias("champion") == first["version"] and _alias("previous") is None

    again = nightly(_params(tmp_path, *STRONG))  # same program, data and settings
    assert again["decision"] == "unchanged" and again["version"] == first["version"]
    assert len(_versions()) == 1

    worse = nightly(_params(tmp_path, *WEAK))
    assert worse["decision"] == "rejected", worse
    assert worse["test_score"] < worse["champion_test_score"] + 1.0
    assert _alias("champion") == first["version"], "a worse challenger must not be promoted"
    assert _alias("previous") is None
    tags = mlflow.MlflowClient().get_model_version(MODEL, worse["version"]).tags
    assert tags["dspex.decision"] == "rejected"
    assert float(tags["dspex.champion_test_score"]) == pytest.approx(worse["champion_test_score"])

    skipped = nightly(_params(tmp_path, *WEAK))  # already decided: nothing to redo
    assert skipped["decision"] == "rejected" and skipped.get("skipped")
    assert "already tested and rejected" in skipped["skip_reason"]
    tags = mlflow.MlflowClient().get_model_version(MODEL, worse["version"]).tags
    assert tags["dspex.nightly_skip_reason"] == skipped["skip_reason"]
    assert tags["dspex.decision"] == "rejected"
    assert len(_versions()) == 2


def test_crash_between_register_and_alias_move_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = nightly(_params(tmp_path, *WEAK))
    assert weak["decision"] == "promoted"

    real_set_alias = _registry.set_alias

    def crash(name: str, alias: str, version: Any) -> None:
        if alias == "champion":
            raise RuntimeError("worker lost between registering and moving the alias")
        real_set_alias(name, alias, version)

    # Only this patch is undone afterwards: monkeypatch.undo() would also undo the test's
    # isolation (conftest's cache and runs directories, MLflow URI, settings).
    with monkeypatch.context() as patch:
        patch.setattr(_registry, "set_alias", crash)
        with pytest.raises(RuntimeError, match="worker lost"):
            nightly(_params(tmp_path, *STRONG))
    assert _alias("champion") == weak["version"], "the old champion keeps serving"
    assert len(_versions()) == 2

    done = nightly(_params(tmp_path, *STRONG))  # the same run, started again
    assert done["decision"] == "promoted", done
    assert _versions() == sorted([weak["version"], done["version"]]), "no duplicate version"
    assert _alias("champion") == done["version"] and _alias("previous") == weak["version"]
    assert done["test_score"] > done["champion_test_score"] + 1.0
