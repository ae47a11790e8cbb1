"""Finetuning: bootstrapped traces → a chat SFT dataset → a LoRA adapter (trl + peft).

The flow around these steps is ``BootstrapFinetune`` (``dspex.optimize``); a finetuned model
answers through ``dspex.LM("local/<base>", adapter="<adapter dir>")``. Torch, transformers,
trl and peft are the ``finetune`` extra and are imported only when a step runs.
"""

from dspex._extras import INSTALL_HINT, require
from dspex.finetune._data import sft_rows, write_sft
from dspex.finetune._train import (
    DeviceInfo,
    ModelShape,
    TrainPlan,
    TrainSettings,
    last_checkpoint,
    plan_training,
    train_lora,
)

__all__ = [
    "INSTALL_HINT",
    "DeviceInfo",
    "ModelShape",
    "TrainPlan",
    "TrainSettings",
    "last_checkpoint",
    "plan_training",
    "require",
    "sft_rows",
    "train_lora",
    "write_sft",
]
