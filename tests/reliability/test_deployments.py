"""Deployment runs, on a real Prefect server with a process worker (deployments/prefect.yaml):
parameters given in part through ``prefect deployment run --params`` are merged over the
deployment's own instead of failing validation, and the worker reads its persisted task
results as JSON only, as a local run does: a pickle-typed result file never runs."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.harness import PREFECT, ROOT, Deployed, shared_deployment

DATA = {"task": "arithmetic", "train_size": 12, "dev_size": 12}


@pytest.fixture(scope="module")
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """Both deployments of deployments/prefect.yaml and a worker that runs them (shared with
    tests/deployments/test_prefect_yaml.py)."""
    yield from shared_deployment(request, tmp_path_factory)


def _run(deployed: Deployed, name: str, params: dict[str, Any]) -> str:
    """``prefect deployment run NAME --params JSON --watch``; the flow run's id once it
    completed (the test fails with the worker's log otherwise)."""
    command = [PREFECT, "--no-prompt", "deployment", "run", name]
    out = subprocess.run(
        [*command, "--params", json.dumps(params), "--watch", "--watch-timeout", "600"],
        env=deployed.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=700,
    )
    log = deployed.worker_log.read_text(errors="replace")[-4000:]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:] + log
    found = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout)
    assert found is not None, out.stdout
    return found.group(1)


def _mlflow_params(runs: Path, experiment: str) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs_ = client.search_runs([found.experiment_id])
    (parent,) = [r for r in runs_ if "mlflow.parentRunId" not in r.data.tags]
    return dict(parent.data.params)


@pytest.mark.slow
def test_a_partial_params_run_merges_over_the_deployments_parameters(
    deployed: Deployed,
) -> None:
    runs = deployed.tmp / "runs-partial"
    # The case: only the optimizer, plus where this run logs.
    part = {
        "params": {
            "optimizer": "LabeledFewShot",
            "settings": {"k": 2},
            "valset": {"dev_size": 10},
            "tracking": {"experiment": "partial"},
            "runs_dir": str(runs),
        }
    }
    _run(deployed, "dspex-experiment/experiment", part)

    logged = _mlflow_params(runs, "partial")
    assert logged["optimizer"] == "LabeledFewShot" and logged["settings.k"] == "2"
    # The rest is the deployment's: program, data, LM, budget.
    assert logged["program"] == "cot:question -> answer: int"
    assert (logged["trainset.task"], logged["trainset.train_size"]) == ("arithmetic", "50")
    assert (logged["valset.split"], logged["valset.dev_size"]) == ("dev", "10")
    assert logged["lm.model"] == "dspex-sim/arithmetic"
    assert logged["budget.max_calls"] == "2000"
    # The default optimizer's settings were not carried over to another optimizer.
    assert not any(k.startswith("settings.num_candidate") for k in logged)


class _Payload:
    """Unpickling this creates ``path``: the code a tampered result file would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _tamper(record_path: Path, marker: Path) -> None:
    """Rewrite a persisted result in Prefect's record layout, as a cloudpickle payload."""
    from prefect.serializers import PickleSerializer

    record = json.loads(record_path.read_bytes())
    serializer = PickleSerializer(picklelib="cloudpickle")
    record["metadata"]["serializer"] = serializer.model_dump(mode="json")
    record["result"] = serializer.dumps(_Payload(marker)).decode()
    record_path.write_text(json.dumps(record))


@pytest.mark.slow
def test_a_pickled_result_in_the_workers_storage_never_runs(deployed: Deployed) -> None:
    runs = deployed.tmp / "runs-tampered"
    params = {
        "params": {
            "program": "cot:question -> answer: int",
            "optimizer": "BootstrapFewShot",
            "settings": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2},
            "trainset": DATA,
            "valset": {**DATA, "split": "dev"},
            "lm": {"model": "dspex-sim/arithmetic"},
            "tracking": {"experiment": "tampered"},
            "runs_dir": str(runs),
        }
    }
    before = set(deployed.results.iterdir()) if deployed.results.exists() else set()
    _run(deployed, "dspex-experiment/experiment", params)
    files = sorted(p for p in set(deployed.results.iterdir()) - before if p.is_file())
    assert files, "the deployment run persisted its task results in the worker's storage"
    marker = deployed.tmp / "pwned"
    for path in files:
        _tamper(path, marker)

    _run(deployed, "dspex-experiment/experiment", params)  # the same run: a cache lookup

    assert not marker.exists(), "a tampered result file ran code on the worker"
    log = deployed.worker_log.read_text(errors="replace")
    assert "Ignoring the persisted result" in log, log[-4000:]
    for path in files:  # recomputed and rewritten as JSON records
        assert json.loads(path.read_bytes())["metadata"]["serializer"]["type"] == "json"
    assert deployed.results.stat().st_mode & 0o777 == 0o700, "owner-only, as local runs"


def test_the_merge_rules_for_a_part() -> None:
    """What the flows do with a part before validating it (docs/operations.md)."""
    import yaml

    from dspex.optimize import NightlyParams
    from dspex.optimize._merge import merge_params

    nightly = yaml.safe_load((ROOT / "deployments/prefect.yaml").read_text())["deployments"][0]
    defaults = nightly["parameters"]["params"]
    defaults["optimize"]["lm"] = {"model": "openai/m", "api_key": "env:GATEWAY_KEY"}
    part = {
        "optimize": {
            "settings": {"seed": 3},  # same optimizer: merged key by key
            "trainset": {"train_size": 20},  # same dataset: merged
            "valset": {"path": "dev.jsonl", "input_keys": ["question"]},  # another: replaced
            "lm": {"model": "openai/other"},  # another LM: its key reference is not carried
        },
        "promotion": {"previous_alias": None},  # null is a value
    }
    merged = NightlyParams.model_validate(merge_params(NightlyParams, defaults, part))
    opt = merged.optimize
    assert opt.settings == {"auto": "light", "seed": 3}
    assert (opt.trainset.task, opt.trainset.train_size, opt.trainset.dev_size) == (
        "arithmetic",
        20,
        50,
    )
    assert opt.valset is not None and (opt.valset.task, opt.valset.path) == (None, "dev.jsonl")
    assert opt.lm is not None and (opt.lm.model, opt.lm.api_key) == ("openai/other", None)
    assert merged.promotion.previous_alias is None
    assert merged.promotion.model_name == "arithmetic-qa" and merged.testset.split == "test"
    other = merge_params(NightlyParams, defaults, {"optimize": {"optimizer": "LabeledFewShot"}})
    assert "settings" not in other["optimize"], "another optimizer's settings are dropped"
