"""A misspelt optimizer setting fails before any LM call, with a did-you-mean, on every path
(TOML config, flow parameters, constructors); a skipped nightly run says why (issue #12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.evaluate import exact_match
from dspex.optimize import NightlyParams, OptimizeParams
from dspex.testing import SimulatedLM

TYPO = "max_bootstraped_demos"
HINT = "did you mean 'max_bootstrapped_demos'"

# The LM the TOML config below names: it counts every request that reaches it.
SIM = SimulatedLM("arithmetic", cache=False)

CONFIG = f"""
program = "cot:question -> answer: int"
optimizer = "BootstrapFewShotWithRandomSearch"
[settings]
num_candidate_programs = 1
{TYPO} = 2
[trainset]
task = "arithmetic"
train_size = 10
[lm]
model = "dspex-sim/arithmetic"
ref = "tests.reliability.test_settings_and_nightly:SIM"
"""


def _optimize(optimizer: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "program": "cot:question -> answer: int",
        "optimizer": optimizer,
        "settings": settings,
        "trainset": {"task": "arithmetic", "train_size": 10},
        "lm": {"model": "dspex-sim/arithmetic"},
    }


# ----- unknown settings --------------------------------------------------------------------


def test_toml_config_typo_is_rejected_before_any_lm_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dspex.cli import main

    config = tmp_path / "opt.toml"
    config.write_text(CONFIG)
    before = SIM.request_count
    assert main(["optimize", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and TYPO in err and HINT in err
    assert "BootstrapFewShotWithRandomSearch" in err
    assert SIM.request_count == before, "no LM call before the config is checked"


@pytest.mark.parametrize(
    ("optimizer", "settings", "bad", "hint"),
    [
        ("BootstrapFewShotWithRandomSearch", {TYPO: 2}, TYPO, "max_bootstrapped_demos"),
        ("BootstrapFewShot", {TYPO: 2}, TYPO, "max_bootstrapped_demos"),
        ("LabeledFewShot", {"kk": 2}, "kk", "k"),
        ("MIPROv2", {"auto": "light", "num_trails": 4}, "num_trails", "num_trials"),
        (
            "BootstrapFinetune",
            {"target": "tiny", "train_kwargs": {"max_step": 5}},
            "max_step",
            "max_steps",
        ),
    ],
)
def test_flow_parameters_typo_is_a_configuration_error(
    optimizer: str, settings: dict[str, Any], bad: str, hint: str
) -> None:
    with pytest.raises(dspex.ConfigurationError) as info:
        OptimizeParams.model_validate(_optimize(optimizer, settings))
    message = str(info.value)
    assert optimizer in message and repr(bad) in message
    assert f"did you mean {hint!r}" in message


def test_nightly_parameters_typo_is_a_configuration_error() -> None:
    data = {"task": "arithmetic", "train_size": 10}
    with pytest.raises(dspex.ConfigurationError, match=HINT):
        NightlyParams.model_validate(
            {
                "optimize": _optimize("BootstrapFewShotWithRandomSearch", {TYPO: 2}),
                "testset": {**data, "split": "test"},
                "promotion": {"model_name": "typo-qa"},
            }
        )


def test_known_settings_still_validate_their_values() -> None:
    ok = OptimizeParams.model_validate(_optimize("MIPROv2", {"auto": "light", "num_trials": 4}))
    assert ok.settings == {"auto": "light", "num_trials": 4}  # kept as given: same cache keys
    with pytest.raises(ValueError, match="auto"):
        OptimizeParams.model_validate(_optimize("MIPROv2", {"auto": "huge"}))


def test_constructor_typo_names_the_closest_argument() -> None:
    lm = SimulatedLM("arithmetic", cache=False)
    with pytest.raises(dspex.ConfigurationError, match=HINT) as info:
        dspex.BootstrapFewShot(exact_match, max_bootstraped_demos=2)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)  # what Python (and DSPy) raise for it
    assert "BootstrapFewShot" in str(info.value)
    with pytest.raises(TypeError, match="did you mean 'num_trials'"):
        dspex.MIPROv2(exact_match, num_trails=4)  # type: ignore[arg-type]
    with pytest.raises(dspex.ConfigurationError, match="did you mean 'max_steps'"):
        dspex.BootstrapFinetune(exact_match, target="tiny", train_kwargs={"max_step": 5})
    assert lm.request_count == 0


# ----- a skipped nightly run -----------------------------------------------------------------

MODEL = "skip-qa"


def _nightly(tmp_path: Path) -> NightlyParams:
    data = {"task": "arithmetic", "train_size": 10, "dev_size": 10}
    return NightlyParams.model_validate(
        {
            "optimize": {
                **_optimize("LabeledFewShot", {"k": 2}),
                "trainset": data,
                "valset": {**data, "split": "dev"},
                "tracking": {"experiment": "skip"},
                "runs_dir": str(tmp_path),
            },
            "testset": {**data, "split": "test"},
            "promotion": {"model_name": MODEL},
        }
    )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_skipped_nightly_records_an_artifact_and_an_mlflow_tag(tmp_path: Path) -> None:
    import mlflow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from dspex.flows.local import nightly

    first = nightly(_nightly(tmp_path))
    assert first["decision"] == "promoted"
    again = nightly(_nightly(tmp_path))  # same program, data and settings
    assert again["skipped"] and again["decision"] == "unchanged"
    assert "unchanged fingerprint" in again["skip_reason"]

    tags = mlflow.MlflowClient().get_model_version(MODEL, first["version"]).tags
    assert "unchanged fingerprint" in tags["dspex.nightly_skip_reason"]
    assert again["promotion_key"] in tags["dspex.nightly_skip_reason"]
    assert tags["dspex.nightly_skipped_at"]
    assert tags["dspex.decision"] == "promoted", "the decision itself stays"

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dspex-promotion"]))
        )
    skipped = [a for a in found if f"{MODEL} v{first['version']}: **skipped**" in str(a.data)]
    assert len(skipped) == 1, [a.data for a in found]
    assert "unchanged fingerprint" in str(skipped[0].data)
