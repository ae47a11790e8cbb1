"""BootstrapFinetune end to end on the CPU: the teacher's passing traces train a LoRA adapter
on a tiny locally-built model; the run logs the dataset, the training curve and the adapter
to MLflow, registers the program, and a fresh process answers with the finetuned weights."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

import dspex
from dspex.datasets import load_task
from dspex.evaluate import exact_match
from dspex.finetune import sft_rows
from dspex.testing import build_tiny_causal_lm
from tests.fresh import run_fresh

# Trains a tiny model on the CPU: minutes on a loaded 2-core machine, past the suite default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TRAIN_KWARGS = {
    "max_steps": 150,
    "learning_rate": 3e-3,
    "save_steps": 50,
    "logging_steps": 10,
    "modules_to_save": ["lm_head", "embed_tokens"],  # a random tiny model: see test_train
}

LOAD = """
import json, sys
import dspex.mlflow
program = dspex.mlflow.load_model("models:/ft-qa@champion")
answers = []
for row in json.loads(sys.argv[1]):
    try:
        answers.append(program(**row).answer)
    except Exception:  # not a trained example: the tiny model may not answer in format
        answers.append(None)
print(json.dumps({"model": program.lm.model, "adapter": program.lm.kwargs["adapter"],
                  "answers": answers}))
"""


def test_bootstrap_finetune_end_to_end(tmp_path: Path) -> None:
    train = list(load_task("arithmetic").split(train=24, dev=10, seed=0).train)
    program = dspex.Predict("question -> answer: int")
    gold = sft_rows(program, {"self": [dict(ex.items()) for ex in train]})["self"]
    base = build_tiny_causal_lm(
        tmp_path / "tiny", [m["content"] for r in gold for m in (*r["prompt"], *r["completion"])]
    )
    optimizer = dspex.BootstrapFinetune(exact_match, target=str(base), train_kwargs=TRAIN_KWARGS)
    student = optimizer.compile(
        program,
        trainset=train,
        valset=train,
        lm=dspex.LM("dspex-sim/arithmetic"),
        runs_dir=tmp_path / "runs",
        tracking={"model_name": "ft-qa", "alias": "champion"},
    )
    result = optimizer.last_result
    assert result is not None and result.model_version == "1"
    # The teacher's passing traces are what the student is trained on; the base model answers
    # none of them (it has not learnt the format), the finetuned one nearly all.
    traces = int(result.candidates[0]["config"].removeprefix("self: ").split()[0])
    assert traces >= 3
    assert result.score is not None and result.score >= 0.8 * 100 * traces / len(train)
    assert student.lm is not None and student.lm.model == f"local/{base}"

    client = mlflow.MlflowClient()
    run = client.get_run(result.mlflow_run_id)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["sft-self"]
    losses = client.get_metric_history(result.mlflow_run_id, "loss.self")
    assert len(losses) >= 10 and losses[-1].value < losses[0].value
    adapter_files = {f.path for f in client.list_artifacts(result.mlflow_run_id, "adapters/self")}
    assert "adapters/self/adapter_config.json" in adapter_files
    assert client.list_artifacts(result.mlflow_run_id, "sft/self")
    # Training progress was reported to Prefect as a progress artifact, ending at 100%.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

    with get_client(sync_client=True) as prefect_client:
        progress = prefect_client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"]))
        )
    assert any(a.description == "finetuning self" and a.data == 100.0 for a in progress)

    # A fresh process loads the registered program and answers with the finetuned model: the
    # adapter travels inside the registered model (the run's copy is gone).
    import shutil

    for trained in (tmp_path / "runs" / "finetune").glob("*/train"):
        shutil.rmtree(trained)
    questions = [{"question": ex.question} for ex in train]
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    served = run_fresh(LOAD, questions, cwd=tmp_path, tracking_uri=uri)
    assert served["model"] == f"local/{base}"
    assert served["adapter"].startswith(str(tmp_path / "fresh-cache" / "adapters"))
    hits = sum(a == ex.answer for a, ex in zip(served["answers"], train, strict=True))
    assert hits / len(train) * 100 == pytest.approx(result.score, abs=0.01), "the same model"
