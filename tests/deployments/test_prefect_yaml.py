"""deployments/prefect.yaml against a real Prefect server: deploy, run on a worker, promote.

``prefect server start`` on 127.0.0.1 with a temporary database, the process work pool, both
deployments deployed from the project root and a worker (tests/deployments/harness.py, shared
with tests/reliability/test_deployments.py); the test checks the nightly schedule, triggers the
nightly deployment with parameters through the API, waits for it, and loads the new
``@champion`` from the MLflow registry in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.harness import Deployed, shared_deployment
from tests.fresh import run_fresh

pytestmark = pytest.mark.slow

MODEL = "deployed-qa"

LOAD = """
import json, sys
import mlflow
champion = mlflow.MlflowClient().get_model_version_by_alias("deployed-qa", "champion")
model = mlflow.pyfunc.load_model("models:/deployed-qa@champion")
answers = model.predict(json.loads(sys.argv[1])).to_dict(orient="records")
print(json.dumps({"tags": champion.tags, "answers": answers}))
"""


@pytest.fixture(scope="module")
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """Both deployments and a worker, shared with tests/reliability/test_deployments.py."""
    yield from shared_deployment(request, tmp_path_factory)


TRIGGER = """
import json, sys
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

with get_client(sync_client=True) as client:
    nightly = client.read_deployment_by_name("dspex-nightly/nightly-arithmetic")
    experiment = client.read_deployment_by_name("dspex-experiment/experiment")
run = run_deployment(
    "dspex-nightly/nightly-arithmetic", parameters=json.loads(sys.argv[1]), timeout=600
)
with get_client(sync_client=True) as client:
    state = client.read_flow_run(run.id).state
print(json.dumps({
    "crons": [s.schedule.cron for s in nightly.schedules],
    "limit": nightly.global_concurrency_limit.limit if nightly.global_concurrency_limit else None,
    "form": sorted(
        experiment.parameter_openapi_schema["definitions"]["OptimizeParams"]["properties"]
    ),
    "state": state.type.value,
    "message": state.message,
}))
"""


def _nightly_params(runs: Path) -> dict[str, Any]:
    data = {"task": "arithmetic", "train_size": 20, "dev_size": 20}
    return {
        "params": {
            "optimize": {
                "program": "cot:question -> answer: int",
                "optimizer": "BootstrapFewShotWithRandomSearch",
                "settings": {
                    "num_candidate_programs": 1,
                    "max_bootstrapped_demos": 2,
                    "max_labeled_demos": 2,
                },
                "trainset": data,
                "valset": {**data, "split": "dev"},
                "lm": {"model": "dspex-sim/arithmetic"},
                "tracking": {"experiment": "deployed"},
                "runs_dir": str(runs),
            },
            "testset": {**data, "split": "test"},
            "promotion": {"model_name": MODEL},
        }
    }


def test_deploy_run_on_a_worker_and_load_the_new_champion(
    deployed: Deployed, tmp_path: Path
) -> None:
    env = deployed.env
    runs = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, "-c", TRIGGER, json.dumps(_nightly_params(runs))],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    worker_text = deployed.worker_log.read_text(errors="replace")
    assert out.returncode == 0, out.stderr[-3000:] + worker_text[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["crons"] == ["0 3 * * *"], "the nightly deployment carries its schedule"
    assert report["limit"] == 1, "one nightly run per program at a time"
    assert {"program", "optimizer", "settings", "trainset", "lm", "budget"} <= set(report["form"])
    assert report["state"] == "COMPLETED", (report, worker_text[-4000:])

    # A fresh process finds the new champion in the registry and answers with it.
    from dspex.datasets import load_task

    test = load_task("arithmetic").split(train=20, dev=20, seed=0).test[:5]
    questions = [{"question": ex.question} for ex in test]
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    served = run_fresh(LOAD, questions, cwd=tmp_path, tracking_uri=uri, env=env)
    assert served["tags"]["dspex.decision"] == "promoted"
    answers = served["answers"]
    assert all(isinstance(a["answer"], int) for a in answers)
    assert sum(a["answer"] == ex.answer for a, ex in zip(answers, test, strict=True)) >= 1
