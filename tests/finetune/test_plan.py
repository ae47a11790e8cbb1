"""How a LoRA run uses its device: precision, batch size and gradient checkpointing chosen
for devices this machine may not have (their capabilities injected), and settings winning."""

from __future__ import annotations

import pytest

from dspex.errors import UserError
from dspex.finetune import DeviceInfo, ModelShape, TrainSettings, plan_training

GIB = 2**30
LLAMA_1B = ModelShape(1_236_000_000, hidden_size=2048, layers=16, vocab_size=128_256)
TINY = ModelShape(160_000, hidden_size=64, layers=2, vocab_size=600)
H200 = DeviceInfo("cuda", bf16=True, free_bytes=139 * GIB, total_bytes=141 * GIB)
T4 = DeviceInfo("cuda", bf16=False, free_bytes=15 * GIB, total_bytes=16 * GIB)
CPU = DeviceInfo("cpu", bf16=True, free_bytes=32 * GIB)


def test_a_large_gpu_trains_bf16_with_a_batch_that_fills_it() -> None:
    plan = plan_training(TrainSettings(), H200, LLAMA_1B, seq_len=1024, rows=1000)
    assert (plan.device, plan.precision, plan.gradient_checkpointing) == ("cuda", "bf16", False)
    assert plan.batch_size == 32  # ~2.6 MB of activations per token: 42 sequences fit
    # Shorter rows, more of them per batch, up to the cap; never more than the rows.
    assert plan_training(TrainSettings(), H200, LLAMA_1B, seq_len=256, rows=1000).batch_size == 64
    assert plan_training(TrainSettings(), H200, LLAMA_1B, seq_len=256, rows=24).batch_size == 16


def test_an_older_gpu_trains_fp16_and_checkpoints_when_nothing_else_fits() -> None:
    roomy = plan_training(TrainSettings(), T4, LLAMA_1B, seq_len=512, rows=1000)
    assert roomy.precision == "fp16" and not roomy.gradient_checkpointing
    assert roomy.batch_size == 4
    tight = plan_training(TrainSettings(), T4, LLAMA_1B, seq_len=8192, rows=1000)
    assert tight.gradient_checkpointing and tight.batch_size >= 1


def test_cpu_trains_fp32_in_batches_of_8() -> None:
    plan = plan_training(TrainSettings(), CPU, TINY, seq_len=100, rows=24)
    assert (plan.precision, plan.batch_size, plan.gradient_checkpointing) == ("fp32", 8, False)
    assert plan_training(TrainSettings(), CPU, TINY, seq_len=100, rows=3).batch_size == 3


def test_settings_win() -> None:
    chosen = TrainSettings(batch_size=4, precision="fp32", gradient_checkpointing=True)
    plan = plan_training(chosen, H200, LLAMA_1B, seq_len=1024, rows=1000)
    assert (plan.precision, plan.batch_size, plan.gradient_checkpointing) == ("fp32", 4, True)
    assert plan.reason == "settings"
    with pytest.raises(UserError, match="precision"):
        TrainSettings.from_dict({"precision": "int8"})
    with pytest.raises(UserError, match="batch_size"):
        TrainSettings.from_dict({"batch_size": 0})
