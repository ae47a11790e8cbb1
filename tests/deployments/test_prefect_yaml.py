"""deployments/prefect.yaml against a real Prefect server: deploy, run on a worker, promote.

Starts ``prefect server start`` on 127.0.0.1 with a temporary database, creates the process
work pool, deploys both deployments from the project root, starts a worker, checks the
nightly schedule, triggers the nightly deployment with parameters through the API, waits for
it, and loads the new ``@champion`` from the MLflow registry in a fresh process. Every process
it starts is stopped (by its process group) at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fresh import run_fresh

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
MODEL = "deployed-qa"

LOAD = """
import json, sys
import mlflow
champion = mlflow.MlflowClient().get_model_version_by_alias("deployed-qa", "champion")
model = mlflow.pyfunc.load_model("models:/deployed-qa@champion")
answers = model.predict(json.loads(sys.argv[1])).to_dict(orient="records")
print(json.dumps({"tags": champion.tags, "answers": answers}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def prefect_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server on 127.0.0.1 (its own PREFECT_HOME and database)."""
    with running_server(tmp_path) as env:
        yield env


@contextmanager
def running_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Start ``prefect server start`` with its home, database and the LM cache under
    ``tmp_path``; yields the environment that reaches it, and stops it at exit."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "DSPEX_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.25)
        yield env
    finally:
        _stop(server)
        log.close()


def _prefect(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [PREFECT, "--no-prompt", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


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
    prefect_env: dict[str, str], tmp_path: Path
) -> None:
    env = prefect_env
    _prefect(env, "work-pool", "create", "dspex-process", "--type", "process")
    _prefect(env, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "dspex-process", "--limit", "1"],
        env=env,
        cwd=tmp_path,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    runs = tmp_path / "runs"
    try:
        out = subprocess.run(
            [sys.executable, "-c", TRIGGER, json.dumps(_nightly_params(runs))],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        _stop(worker)
        worker_log.close()
    assert report["crons"] == ["0 3 * * *"], "the nightly deployment carries its schedule"
    assert report["limit"] == 1, "one nightly run per program at a time"
    assert {"program", "optimizer", "settings", "trainset", "lm", "budget"} <= set(report["form"])
    worker_text = (tmp_path / "worker.log").read_text()
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
