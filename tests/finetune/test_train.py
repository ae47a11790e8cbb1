"""LoRA finetuning of a tiny locally-built model: the loss on the traces drops, the finetuned
model answers them better than the base model, and a killed run resumes from its checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex._extras import device as auto_device
from dspex.datasets import load_task
from dspex.evaluate import exact_match
from dspex.finetune import TrainSettings, sft_rows, train_lora
from dspex.testing import build_tiny_causal_lm

pytestmark = pytest.mark.slow

# A randomly initialised tiny model learns the format and the answers only if its embeddings
# and output layer train too (modules_to_save); real models need only the adapter.
SETTINGS = {
    "max_steps": 150,
    "learning_rate": 3e-3,
    "save_steps": 50,
    "logging_steps": 10,
    "modules_to_save": ["lm_head", "embed_tokens"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    train = list(load_task("arithmetic").split(train=24, dev=10, seed=0).train)
    program = dspex.Predict("question -> answer: int")
    rows = sft_rows(program, {"self": [dict(ex.items()) for ex in train]})["self"]
    texts = [m["content"] for r in rows for m in (*r["prompt"], *r["completion"])]
    base = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny"), texts)
    return {"train": train, "rows": rows, "base": str(base), "program": program}


def _exact_match(program: dspex.Module, lm: dspex.LM, examples: list[Any]) -> float:
    program = program.deepcopy()
    program.set_lm(lm)
    result = dspex.Evaluate(devset=examples, metric=exact_match, progress=False)(program)
    return float(result.score)


def test_finetuning_fits_the_traces(data: dict[str, Any], tmp_path: Path) -> None:
    logs: list[dict[str, Any]] = []
    out = train_lora(
        data["base"],
        data["rows"],
        tmp_path / "run",
        TrainSettings.from_dict(SETTINGS),
        on_log=logs.append,
    )
    # The device auto-pick chose (a GPU when there is one), with the plan made for it.
    assert out["steps"] == 150 and out["device"] == auto_device() and out["resumed_from"] is None
    gpu = out["device"].startswith("cuda")
    assert out["precision"] in (("bf16", "fp16") if gpu else ("fp32",))
    assert out["batch_size"] >= 1 and out["train_tokens"] > 0
    assert out["tokens_per_s"] > 0 and out["peak_memory_mb"] > 0
    assert out["loss_after"] < out["loss_before"]
    assert any("loss" in r and "learning_rate" in r for r in logs)
    assert (Path(out["adapter_dir"]) / "adapter_config.json").exists()

    before = _exact_match(data["program"], dspex.LM(f"local/{data['base']}"), data["train"])
    tuned = dspex.LM(f"local/{data['base']}", adapter=out["adapter_dir"])
    after = _exact_match(data["program"], tuned, data["train"])
    assert before == 0.0 and after >= 50.0, (before, after)


KILLED = """
import json, os, signal, sys
from dspex.finetune import TrainSettings, train_lora
rows = json.loads(open(sys.argv[3]).read())
def stop(record):
    if record.get("step", 0) >= 30:  # after checkpoint-20, before checkpoint-40
        os.kill(os.getpid(), signal.SIGKILL)
train_lora(sys.argv[1], rows, sys.argv[2], TrainSettings(max_steps=60, learning_rate=3e-3,
           save_steps=20, logging_steps=5), on_log=stop)
"""


def test_a_killed_run_resumes_from_its_last_checkpoint(
    data: dict[str, Any], tmp_path: Path
) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(data["rows"]))
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, data["base"], str(run), str(rows)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (run / "checkpoints" / "checkpoint-20").exists()
    assert not (run / "adapter").exists()

    steps: list[int] = []
    out = train_lora(
        data["base"],
        data["rows"],
        run,
        TrainSettings(max_steps=60, learning_rate=3e-3, save_steps=20, logging_steps=5),
        on_log=lambda r: steps.append(r["step"]),
    )
    assert out["resumed_from"] == "checkpoint-20" and out["steps"] == 60
    assert min(s for s in steps if s) > 20, "steps before the checkpoint are not trained again"
