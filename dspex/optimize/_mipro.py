"""MIPROv2's steps: presets, grounded instruction proposal, trial configs and minibatches.

The control flow (bootstrap → summarize → propose → Bayesian search → select) lives in
``flows/mipro.py``; these are the plain functions it runs as Prefect tasks.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspex._runtime import run_sync
from dspex._settings import context
from dspex.errors import UserError
from dspex.modules import Predict
from dspex.optimize._demos import DemoSet, apply_demos
from dspex.primitives import Example, Module

__all__ = [
    "AUTO_PRESETS",
    "TIPS",
    "MiproPlan",
    "apply_config",
    "config_key",
    "describe_program",
    "minibatch_indices",
    "plan",
    "propose_instructions",
    "summarize_dataset",
]

# The published presets: candidates per predictor and validation examples.
AUTO_PRESETS: dict[str, dict[str, int]] = {
    "light": {"num_candidates": 6, "val_size": 100},
    "medium": {"num_candidates": 12, "val_size": 300},
    "heavy": {"num_candidates": 18, "val_size": 1000},
}

TIPS: tuple[str, ...] = (
    "Make the instruction creative.",
    "Keep the instruction short and simple.",
    "Make the instruction very detailed.",
    "Have the instruction describe the persona of an expert in the task.",
    "Describe the task precisely, including the expected answer format.",
    "Warn against the most common mistakes on this task.",
)


@dataclass(frozen=True)
class MiproPlan:
    """How big the search is, resolved from ``auto`` or explicit settings."""

    num_candidates: int
    num_trials: int
    minibatch_size: int
    minibatch_full_eval_steps: int
    val_size: int | None
    trial_batch_size: int
    seed: int


def plan(settings: Mapping[str, Any], n_predictors: int, n_val: int) -> MiproPlan:
    """Resolve the settings into a plan; ``num_trials`` follows DSPy's formula when unset."""
    auto = settings.get("auto")
    if auto is not None and auto not in AUTO_PRESETS:
        raise UserError(f"MIPROv2(auto={auto!r}): use 'light', 'medium', 'heavy' or None.")
    preset = AUTO_PRESETS.get(auto or "", {})
    n = int(settings.get("num_candidates") or preset.get("num_candidates") or 0)
    if n < 2:
        raise UserError("MIPROv2 needs num_candidates >= 2 (or auto='light'|'medium'|'heavy').")
    zero_shot = not (settings.get("max_bootstrapped_demos") or settings.get("max_labeled_demos"))
    n_vars = n_predictors * (1 if zero_shot else 2)
    trials = settings.get("num_trials") or max(int(2 * n_vars * math.log2(n)), math.ceil(1.5 * n))
    return MiproPlan(
        num_candidates=n,
        num_trials=int(trials),
        minibatch_size=min(int(settings.get("minibatch_size", 35)), n_val),
        minibatch_full_eval_steps=int(settings.get("minibatch_full_eval_steps", 5)),
        val_size=preset.get("val_size"),
        trial_batch_size=int(settings.get("trial_batch_size", 4)),
        seed=int(settings.get("seed", 0)),
    )


def summarize_dataset(trainset: Sequence[Example], lm: Any, *, n: int = 20, seed: int = 0) -> str:
    """A short description of the task's data, written by the prompt model."""
    sample = random.Random(seed).sample(list(trainset), min(n, len(trainset)))
    rows = "\n".join(str(ex.to_dict()) for ex in sample)
    describe = Predict("examples -> summary")
    describe.signature = describe.signature.with_instructions(
        "Given several examples from a dataset, write a short summary of what the task is and "
        "what a good answer looks like."
    )
    with context(lm=lm, labels={"stage": "propose"}):
        return str(describe(examples=rows).summary)


def describe_program(program: Module, lm: Any) -> str:
    """What the program does, from its predictors' signatures, written by the prompt model."""
    sigs = "\n".join(
        f"{name}: {p.signature.signature} — {p.signature.instructions}"
        for name, p in program.named_predictors()
    )
    describe = Predict("program_signatures -> program_description")
    describe.signature = describe.signature.with_instructions(
        "Describe in two sentences what this language-model program does."
    )
    with context(lm=lm, labels={"stage": "propose"}):
        return str(describe(program_signatures=sigs).program_description)


async def _propose_one(
    predictor: Predict, summary: str, description: str, demos: str, tip: str, idx: int
) -> str:
    propose = Predict(
        "dataset_summary, program_description, task_signature, example_demos, tip "
        "-> proposed_instruction",
        rollout_id=f"propose-{idx}",
        temperature=1.0,
    )
    propose.signature = propose.signature.with_instructions(
        "Propose an instruction that will make a language model do this task well."
    )
    pred = await propose.acall(
        dataset_summary=summary,
        program_description=description,
        task_signature=f"{predictor.signature.signature}: {predictor.signature.instructions}",
        example_demos=demos,
        tip=tip,
    )
    return str(pred.proposed_instruction).strip()


def propose_instructions(
    program: Module,
    demosets: Sequence[DemoSet],
    summary: str,
    description: str,
    n: int,
    lm: Any,
    *,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Per predictor: the original instruction, then ``n - 1`` grounded proposals."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for name, predictor in program.named_predictors():
        jobs = []
        for i in range(1, n):
            demos = demosets[i % len(demosets)].demos.get(name, ()) if demosets else ()
            shown = "\n".join(str(dict(d)) for d in list(demos)[:3]) or "(none)"
            jobs.append(_propose_one(predictor, summary, description, shown, rng.choice(TIPS), i))

        async def gather(jobs: list[Any] = jobs) -> list[str]:
            return list(await asyncio.gather(*jobs))

        with context(lm=lm, labels={"stage": "propose"}):
            proposals = run_sync(gather())
        unique = [predictor.signature.instructions]
        unique += [p for p in proposals if p and p not in unique]
        out[name] = unique
    return out


def config_key(config: Mapping[str, int]) -> str:
    """A stable key for a trial configuration."""
    return ",".join(f"{k}={config[k]}" for k in sorted(config))


def apply_config(
    program: Module,
    config: Mapping[str, int],
    instructions: Mapping[str, Sequence[str]],
    demosets: Sequence[DemoSet],
) -> Module:
    """The program with each predictor's chosen instruction and demo set."""
    names = [n for n, _ in program.named_predictors()]
    merged: dict[str, tuple[Mapping[str, Any], ...]] = {}
    for name in names:
        ds = demosets[config[f"{name}.demos"]] if demosets else DemoSet()
        merged[name] = tuple(ds.demos.get(name, ()))
    new = apply_demos(program, DemoSet(demos=merged))
    for name, predictor in new.named_predictors():
        text = instructions[name][config[f"{name}.instruction"]]
        predictor.signature = predictor.signature.with_instructions(text)
    return new


def minibatch_indices(n_val: int, size: int, seed: int, index: int) -> list[int]:
    """The validation rows of logical trial ``index``: the same rows on a resumed run."""
    return sorted(random.Random(f"{seed}-minibatch-{index}").sample(range(n_val), size))
