"""The run as task inputs: a frozen value whose Prefect cache key is the same in every
process, which is how a restarted run finds its finished tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
from prefect.utilities.hashing import hash_objects

from dspex.optimize import DatasetSpec, LMSpec, RunInputs

REPO = Path(__file__).parents[2]

HASH = """
from prefect.utilities.hashing import hash_objects
from dspex.optimize import DatasetSpec, LMSpec, RunInputs
from tests.optimize.test_run_inputs import sample
print(hash_objects({"run": sample()}))
"""


def sample() -> RunInputs:
    return RunInputs(
        optimizer="MIPROv2",
        program="cot:question -> answer",
        program_fp="p" * 16,
        metric="dspex.evaluate:exact_match",
        trainset=DatasetSpec(task="arithmetic", split="train"),
        trainset_fp="t" * 16,
        valset=DatasetSpec(task="arithmetic", split="dev"),
        valset_fp="v" * 16,
        lm=LMSpec(model="dspex-sim/arithmetic", kwargs={"temperature": 0.0}),
        settings={"num_trials": 10, "auto": None, "seed": 0},
    )


def test_run_inputs_are_frozen_values() -> None:
    run = sample()
    with pytest.raises(pydantic.ValidationError):
        run.program = "predict:question -> answer"  # type: ignore[misc]
    assert RunInputs.model_validate(run.model_dump(mode="json")) == run


def test_the_cache_key_of_run_inputs_is_the_same_in_a_fresh_process() -> None:
    here = hash_objects({"run": sample()})
    assert here is not None
    out = subprocess.run(
        [sys.executable, "-c", HASH],
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == here
    # ...and it changes with what the run is.
    changed = sample().model_copy(update={"settings": {"num_trials": 11}})
    assert hash_objects({"run": changed}) != here
