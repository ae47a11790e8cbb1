"""LoRA finetuning with trl's SFT trainer: checkpoints, resume, progress callbacks."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dspex._extras import device as pick_device
from dspex._extras import require

__all__ = ["TrainSettings", "last_checkpoint", "train_lora"]


@dataclass(frozen=True)
class TrainSettings:
    """Training settings (``BootstrapFinetune(train_kwargs=...)``); defaults suit a small
    dataset of bootstrapped traces."""

    max_steps: int = 200
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] | None = None  # trained in full next to the adapter
    save_steps: int = 50
    logging_steps: int = 10
    max_length: int = 1024
    seed: int = 0
    device: str | None = None  # None: cuda if present, else mps, else cpu

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainSettings:
        from dspex.errors import UserError

        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(
                f"Unknown train_kwargs {unknown}; use {sorted(cls.__dataclass_fields__)}."
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The newest complete ``checkpoint-<step>`` under ``directory`` (trainer state saved)."""
    found = []
    for p in Path(directory).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and (p / "trainer_state.json").exists():
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def train_lora(
    base_model: str,
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    settings: TrainSettings | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on ``rows`` (prompt/completion chat rows) over ``base_model`` (a
    local path or hub id); save the adapter and tokenizer in ``<out_dir>/adapter``.

    Checkpoints go to ``<out_dir>/checkpoints`` every ``save_steps``; if one exists, training
    resumes from the newest (a killed run loses at most ``save_steps`` steps). ``on_log``
    receives each logged record (``step``, ``loss``, ``learning_rate``, ...). Returns the
    adapter directory, the loss on the rows before and after, and where it resumed from.
    """
    require("torch", "transformers", "peft", "trl", "datasets")

    with warnings.catch_warnings():
        # transformers/trl/peft deprecation chatter about their own defaults: not the caller's.
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
        return _train(base_model, rows, Path(out_dir), settings or TrainSettings(), on_log)


def _train(
    base_model: str,
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    s: TrainSettings,
    on_log: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    hf_datasets = require("datasets")[0]
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

    checkpoints = out / "checkpoints"
    where = pick_device(s.device)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = hf_datasets.Dataset.from_list([dict(r) for r in rows])

    class Forward(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if on_log is not None and logs:
                on_log({"step": state.global_step, **logs})

    config = SFTConfig(
        output_dir=str(checkpoints),
        max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        learning_rate=s.learning_rate,
        lr_scheduler_type="constant",
        logging_steps=s.logging_steps,
        save_steps=s.save_steps,
        save_total_limit=2,
        max_length=s.max_length,
        seed=s.seed,
        report_to=[],
        use_cpu=where == "cpu",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=base_model,
        args=config,
        train_dataset=dataset,
        eval_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=s.lora_r,
            lora_alpha=s.lora_alpha,
            lora_dropout=s.lora_dropout,
            target_modules=s.target_modules,
            modules_to_save=s.modules_to_save,
            task_type="CAUSAL_LM",
        ),
        callbacks=[Forward()],
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for quiet in (PrinterCallback, ProgressCallback):  # progress goes to on_log, not stdout
        trainer.remove_callback(quiet)
    resume = last_checkpoint(checkpoints)
    before = None if resume else float(trainer.evaluate()["eval_loss"])
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    after = float(trainer.evaluate()["eval_loss"])
    adapter = out / "adapter"
    model: Any = trainer.model
    model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    return {
        "adapter_dir": str(adapter),
        "loss_before": before,
        "loss_after": after,
        "steps": trainer.state.global_step,
        "resumed_from": resume.name if resume else None,
        "device": where,
    }
