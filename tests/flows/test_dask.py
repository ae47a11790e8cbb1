"""Scale-out by configuration: a small MIPROv2 run whose tasks run on a local Dask cluster
(worker processes), with its trace rows recorded by those workers into the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dspex
from dspex.errors import UserError
from dspex.flows.local import mipro
from dspex.optimize import OptimizeParams

pytestmark = pytest.mark.slow


def _params(tmp_path: Path, **overrides: object) -> OptimizeParams:
    # Small data and one worker process: what is checked is where the tasks ran and that
    # their trace rows reached the run, not how the work spreads.
    data = {"task": "arithmetic", "train_size": 12, "dev_size": 12}
    return OptimizeParams.model_validate(
        {
            "program": "cot:question -> answer: int",
            "optimizer": "MIPROv2",
            "settings": {
                "num_candidates": 3,
                "num_trials": 4,
                "minibatch_size": 10,
                "minibatch_full_eval_steps": 2,
                "trial_batch_size": 2,
                "max_bootstrapped_demos": 2,
                "max_labeled_demos": 2,
                "seed": 0,
            },
            "trainset": data,
            "valset": {**data, "split": "dev"},
            "lm": {"model": "dspex-sim/arithmetic"},
            "tracking": {"experiment": "dask", "model_name": "dask-qa", "alias": "champion"},
            "task_runner": {"kind": "dask", "dask_workers": 1},
            "runs_dir": str(tmp_path),
            **overrides,
        }
    )


def test_miprov2_on_a_local_dask_cluster(tmp_path: Path) -> None:
    result = mipro(_params(tmp_path))
    assert result["model_version"] == "1" and result["score"] is not None
    assert len([c for c in result["candidates"] if c["kind"] == "minibatch"]) == 4

    rows = dspex.traces.sql(
        "SELECT stage, labels['worker'] AS worker, count(*) AS n FROM traces "
        "WHERE kind = 'lm' GROUP BY ALL",
        runs_dir=tmp_path,
    ).to_pylist()
    stages = {r["stage"] for r in rows}
    assert {"bootstrap", "propose", "search", "full-eval"} <= stages, rows
    # Submitted tasks ran in Dask worker processes, which recorded their calls into the run
    # (labelled with the worker); the proposal step is called directly, in the flow's process,
    # while the summary and description it grounds on are a submitted task.
    fanned_out = [r for r in rows if r["stage"] != "propose"]
    here = f":{os.getpid()}"
    assert all(r["worker"] and not r["worker"].endswith(here) for r in fanned_out), rows
    assert len({r["worker"] for r in fanned_out}) >= 1
    proposing = {r["worker"] is None: r["n"] for r in rows if r["stage"] == "propose"}
    assert proposing == {False: 2, True: 2}, rows  # summary + description; 2 proposals


def test_objects_that_cannot_leave_the_process_are_refused_up_front(tmp_path: Path) -> None:
    from dspex.optimize import register_object

    local = register_object(dspex.ChainOfThought("question -> answer: int"))
    with pytest.raises(UserError, match=r"program.*package.module:attr"):
        mipro(_params(tmp_path, program=local))
