"""LoRA finetuning with trl's SFT trainer: checkpoints, resume, progress callbacks.

How a run uses its device (:func:`plan_training`, each choice overridable in
:class:`TrainSettings`):

* **Precision.** bfloat16 mixed precision on a GPU that supports it (frozen base weights
  loaded in bfloat16; float32 when ``modules_to_save`` trains some in full), float16 mixed
  precision on older GPUs, float32 on CPU and Apple MPS.
* **Batch size.** On a GPU, the largest power of two (at most 64, at most the number of rows)
  whose activations fit: 80% of the free memory, less the weights and 1 GiB for the CUDA
  context, LoRA optimizer state and fragmentation, over the bytes one sequence of the
  longest row costs (per token: ~34 bytes per hidden unit per layer in 16-bit, Korthikanti
  et al. 2022, plus ~12 bytes per vocabulary entry for the float32 logits and their
  gradient). If not even one sequence fits, gradient checkpointing is turned on (activations
  of one layer at a time) and the size worked out again. On CPU and MPS: 8.
* **Report.** The result (and so the flow's MLflow run) carries tokens trained per second
  and the peak memory: the GPU's peak allocation, or the process's peak resident memory.
"""

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
from dspex.lm._hf import DeviceInfo, probe_device

__all__ = [
    "DeviceInfo",
    "ModelShape",
    "TrainPlan",
    "TrainSettings",
    "last_checkpoint",
    "plan_training",
    "train_lora",
]

_PRECISIONS = ("bf16", "fp16", "fp32")
_GIB = 2**30
_MAX_AUTO_BATCH = 64
_CPU_BATCH = 8


@dataclass(frozen=True)
class TrainSettings:
    """Training settings (``BootstrapFinetune(train_kwargs=...)``); defaults suit a small
    dataset of bootstrapped traces."""

    max_steps: int = 200
    learning_rate: float = 2e-4
    batch_size: int | None = None  # None: fill the device (see the module docs)
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
    precision: str | None = None  # "bf16", "fp16" or "fp32"; None: the device's best
    gradient_checkpointing: bool | None = None  # None: only when a batch would not fit

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainSettings:
        from dspex.errors import UserError

        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(
                f"Unknown train_kwargs {unknown}; use {sorted(cls.__dataclass_fields__)}."
            )
        if values.get("precision") not in (None, *_PRECISIONS):
            raise UserError(
                f"train_kwargs precision={values['precision']!r}: use one of {_PRECISIONS} "
                "or leave it out for the device's best."
            )
        size = values.get("batch_size")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise UserError(f"train_kwargs batch_size={size!r}: use an int >= 1, or None.")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a model that its training memory depends on (from its config)."""

    parameters: int
    hidden_size: int
    layers: int
    vocab_size: int

    @classmethod
    def of(cls, config: Any, parameters: int) -> ModelShape:
        text = getattr(config, "text_config", None) or config
        return cls(
            parameters,
            int(text.hidden_size),
            int(text.num_hidden_layers),
            int(text.vocab_size),
        )


@dataclass(frozen=True)
class TrainPlan:
    """How a run uses its device: what :func:`plan_training` chose (and why)."""

    device: str
    precision: str  # "bf16", "fp16" or "fp32"
    batch_size: int
    gradient_checkpointing: bool
    reason: str


def plan_training(
    settings: TrainSettings, device: DeviceInfo, model: ModelShape, *, seq_len: int, rows: int
) -> TrainPlan:
    """Precision, batch size and gradient checkpointing for LoRA training of ``model`` on
    ``device`` (the heuristic in the module docs); what ``settings`` sets wins.

    ``seq_len`` is the longest row in tokens (at most ``max_length``), ``rows`` how many rows.

    Example:
        >>> from dspex.finetune import DeviceInfo, ModelShape, TrainSettings, plan_training
        >>> h200 = DeviceInfo("cuda", bf16=True, free_bytes=139 * 2**30)
        >>> llama_1b = ModelShape(1_236_000_000, 2048, 16, 128_256)
        >>> plan = plan_training(TrainSettings(), h200, llama_1b, seq_len=1024, rows=1000)
        >>> plan.precision, plan.batch_size, plan.gradient_checkpointing
        ('bf16', 32, False)
    """
    precision = settings.precision or _precision(device)
    if settings.batch_size is not None:
        checkpointing = bool(settings.gradient_checkpointing)
        return TrainPlan(device.kind, precision, settings.batch_size, checkpointing, "settings")
    if device.kind != "cuda" or device.free_bytes is None:
        return TrainPlan(
            device.kind,
            precision,
            min(_CPU_BATCH, max(1, rows)),
            bool(settings.gradient_checkpointing),
            f"{_CPU_BATCH} on {device.kind}",
        )
    width = 4 if precision == "fp32" else 2
    weights = 2 if _half_weights(settings, precision) else 4
    usable = int(0.8 * device.free_bytes) - model.parameters * weights - _GIB
    checkpointing = bool(settings.gradient_checkpointing)
    fits = max(0, usable) // (seq_len * _bytes_per_token(model, width, checkpointing))
    if fits < 1 and settings.gradient_checkpointing is None:
        checkpointing = True  # not one sequence fits: keep one layer's activations at a time
        fits = max(0, usable) // (seq_len * _bytes_per_token(model, width, checkpointing))
    size = _power_of_two_at_most(max(1, min(fits, _MAX_AUTO_BATCH, max(1, rows))))
    why = f"{fits} sequences of {seq_len} tokens fit in {usable / _GIB:.1f} GiB"
    return TrainPlan(device.kind, precision, size, checkpointing, why)


def _half_weights(settings: TrainSettings, precision: str) -> bool:
    """Whether the base weights load in bf16: only when they all stay frozen. LoRA weights
    are float32 either way (peft upcasts them); modules trained in full keep float32 master
    weights, as fp16 mixed precision needs for every trained weight."""
    return precision == "bf16" and not settings.modules_to_save


def _precision(device: DeviceInfo) -> str:
    if device.kind == "cuda":
        return "bf16" if device.bf16 else "fp16"
    return "fp32"


def _bytes_per_token(model: ModelShape, width: int, checkpointing: bool) -> int:
    """Activation bytes one token costs in training: ~34 bytes per hidden unit per layer in
    16-bit (only the layer inputs, plus one layer's worth, with checkpointing), plus the
    float32 logits, their softmax and gradient."""
    per_layer = 34 * model.hidden_size * width // 2
    layers = per_layer * model.layers
    if checkpointing:
        layers = 2 * model.hidden_size * width * model.layers + per_layer
    return layers + 12 * model.vocab_size


def _power_of_two_at_most(n: int) -> int:
    return 1 << (n.bit_length() - 1)


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
    from transformers import AutoTokenizer
    from trl import SFTTrainer  # type: ignore[attr-defined]

    checkpoints = out / "checkpoints"
    where = pick_device(s.device)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model, plan = _load_and_plan(base_model, tokenizer, rows, s, where)
    dataset = hf_datasets.Dataset.from_list([dict(r) for r in rows])
    meter = _meter(on_log, where)
    trainer = SFTTrainer(
        model=model,
        args=_sft_config(checkpoints, s, plan, where),
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
        callbacks=[meter],
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for quiet in (PrinterCallback, ProgressCallback):  # progress goes to on_log, not stdout
        trainer.remove_callback(quiet)
    resume = last_checkpoint(checkpoints)
    before = None if resume else float(trainer.evaluate()["eval_loss"])
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    after = float(trainer.evaluate()["eval_loss"])
    adapter = out / "adapter"
    trained: Any = trainer.model
    trained.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    return {
        "adapter_dir": str(adapter),
        "loss_before": before,
        "loss_after": after,
        "steps": trainer.state.global_step,
        "resumed_from": resume.name if resume else None,
        "device": where,
        "precision": plan.precision,
        "batch_size": plan.batch_size,
        "gradient_checkpointing": plan.gradient_checkpointing,
        **meter.report(),
    }


def _load_and_plan(
    base_model: str,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    s: TrainSettings,
    where: str,
) -> tuple[Any, TrainPlan]:
    """The base model, loaded for training on ``where``, and the run's :class:`TrainPlan`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    device = probe_device(where)
    config = AutoConfig.from_pretrained(base_model)
    precision = s.precision or _precision(device)  # what plan_training will choose
    dtype = torch.bfloat16 if _half_weights(s, precision) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    shape = ModelShape.of(config, sum(p.numel() for p in model.parameters()))
    seq_len = min(s.max_length, _longest_row(tokenizer, rows) or s.max_length)
    plan = plan_training(s, device, shape, seq_len=seq_len, rows=len(rows))
    return model, plan


def _longest_row(tokenizer: Any, rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Tokens in the longest prompt + completion (chat template applied), if it has one."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    longest = 0
    for row in rows:
        messages = [*row.get("prompt", []), *row.get("completion", [])]
        text = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False)
        longest = max(longest, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return longest or None


def _sft_config(checkpoints: Path, s: TrainSettings, plan: TrainPlan, where: str) -> Any:
    from trl import SFTConfig  # type: ignore[attr-defined]

    return SFTConfig(
        output_dir=str(checkpoints),
        max_steps=s.max_steps,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        gradient_checkpointing=plan.gradient_checkpointing,
        bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16",
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
        include_num_input_tokens_seen="non_padding",
    )


def _meter(on_log: Callable[[dict[str, Any]], None] | None, where: str) -> Any:
    """A trainer callback that forwards each log record to ``on_log`` and measures this
    run's training: tokens per second (non-padding tokens, this run's steps only, when
    resumed) and peak memory (GPU allocation, or the process's peak resident memory)."""
    import resource
    import time

    import torch
    from transformers import TrainerCallback

    cuda = where.startswith("cuda")

    class Meter(TrainerCallback):
        tokens = 0
        seconds = 0.0

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if on_log is not None and logs:
                on_log({"step": state.global_step, **logs})

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            self._start = (time.perf_counter(), state.num_input_tokens_seen)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            started, tokens = self._start
            self.seconds = time.perf_counter() - started
            self.tokens = int(state.num_input_tokens_seen - tokens)

        def report(self) -> dict[str, Any]:
            if cuda:
                peak = torch.cuda.max_memory_allocated() / 2**20
            else:  # Linux reports kilobytes, macOS bytes
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                peak = rss / (2**20 if os.uname().sysname == "Darwin" else 2**10)
            return {
                "train_tokens": self.tokens,
                "train_seconds": self.seconds,
                "tokens_per_s": self.tokens / self.seconds if self.seconds else 0.0,
                "peak_memory_mb": peak,
            }

    return Meter()
