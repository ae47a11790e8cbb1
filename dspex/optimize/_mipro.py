"""MIPROv2's steps: presets, grounded instruction proposal, trial configs and minibatches.

The control flow (bootstrap → summarize → propose → Bayesian search → select) lives in
``flows/mipro.py``; these are the plain functions it runs as Prefect tasks.

The prompt model's answers are asked once more when they do not parse (a fresh sample: its
own rollout id, temperature 1.0); one that fails again is skipped and logged, and the step
goes on without it: no dataset summary, no program description, one proposal fewer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspex._redact import redact_text
from dspex._runtime import run_sync
from dspex._settings import context
from dspex.errors import ParseError, UserError
from dspex.modules import Predict
from dspex.optimize._demos import DemoSet, apply_demos
from dspex.primitives import Example, Module, Prediction

__all__ = [
    "AUTO_PRESETS",
    "TIPS",
    "MiproPlan",
    "Proposals",
    "apply_config",
    "config_key",
    "minibatch_indices",
    "plan",
    "propose_instructions",
    "summarize_and_describe",
]

_log = logging.getLogger("dspex.optimize")

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
        # minibatch=False (DSPy's compile argument): every trial scores the whole valset
        minibatch_size=(
            min(int(settings.get("minibatch_size", 35)), n_val)
            if settings.get("minibatch", True)
            else n_val
        ),
        minibatch_full_eval_steps=int(settings.get("minibatch_full_eval_steps", 5)),
        val_size=preset.get("val_size"),
        trial_batch_size=int(settings.get("trial_batch_size", 4)),
        seed=int(settings.get("seed", 0)),
    )


async def _ask(predict: Predict, what: str, **inputs: Any) -> Prediction | None:
    """``predict``'s answer; an unparseable one is asked again once as a fresh sample, and
    ``None`` (logged) when that one does not parse either."""
    try:
        return await predict.acall(**inputs)
    except ParseError:
        pass
    retry = predict.deepcopy()
    first = predict.config.get("rollout_id") or "ask"
    retry.config = {**predict.config, "rollout_id": f"{first}-retry", "temperature": 1.0}
    try:
        return await retry.acall(**inputs)
    except ParseError as e:
        _log.warning(
            "MIPROv2 skipped %s: the prompt model's answer did not parse, twice (%s).",
            what,
            redact_text(e.reason)[:200],
        )
        return None


async def _summarize_dataset(trainset: Sequence[Example], n: int, seed: int) -> str | None:
    """A short description of the task's data, written by the prompt model; ``None`` when
    its answer did not parse on either try."""
    sample = random.Random(seed).sample(list(trainset), min(n, len(trainset)))
    rows = "\n".join(str(ex.to_dict()) for ex in sample)
    describe = Predict("examples -> summary")
    describe.signature = describe.signature.with_instructions(
        "Given several examples from a dataset, write a short summary of what the task is and "
        "what a good answer looks like."
    )
    pred = await _ask(describe, "the dataset summary", examples=rows)
    return None if pred is None else str(pred.summary)


async def _describe_program(program: Module) -> str | None:
    """What the program does, from its predictors' signatures, written by the prompt model;
    ``None`` when its answer did not parse on either try."""
    sigs = "\n".join(
        f"{name}: {p.signature.signature} — {p.signature.instructions}"
        for name, p in program.named_predictors()
    )
    describe = Predict("program_signatures -> program_description")
    describe.signature = describe.signature.with_instructions(
        "Describe in two sentences what this language-model program does."
    )
    pred = await _ask(describe, "the program description", program_signatures=sigs)
    return None if pred is None else str(pred.program_description)


def summarize_and_describe(
    trainset: Sequence[Example], program: Module, lm: Any, *, n: int = 20, seed: int = 0
) -> tuple[str | None, str | None]:
    """The dataset summary (from ``n`` seeded training examples) and the program
    description, asked of the prompt model at once; each ``None`` when its answer did not
    parse on either try. Neither needs the demo sets, so the flow asks while they are
    bootstrapped."""

    async def both() -> tuple[str | None, str | None]:
        summary, description = await asyncio.gather(
            _summarize_dataset(trainset, n, seed), _describe_program(program)
        )
        return summary, description

    with context(lm=lm, labels={"stage": "propose"}):
        return run_sync(both())


async def _propose_one(
    predictor: Predict, summary: str, description: str, demos: str, tip: str, idx: int
) -> str | None:
    propose = Predict(
        "dataset_summary, program_description, task_signature, example_demos, tip "
        "-> proposed_instruction",
        rollout_id=f"propose-{idx}",
        temperature=1.0,
    )
    propose.signature = propose.signature.with_instructions(
        "Propose an instruction that will make a language model do this task well."
    )
    pred = await _ask(
        propose,
        f"instruction proposal {idx}",
        dataset_summary=summary,
        program_description=description,
        task_signature=f"{predictor.signature.signature}: {predictor.signature.instructions}",
        example_demos=demos,
        tip=tip,
    )
    return None if pred is None else str(pred.proposed_instruction).strip()


@dataclass(frozen=True)
class Proposals:
    """Instructions per predictor: the original first, then the proposals.

    Attributes:
        instructions: predictor name → its candidate instructions.
        skipped: proposals left out because the answer did not parse on either try.
    """

    instructions: dict[str, list[str]]
    skipped: int = 0


def propose_instructions(
    program: Module,
    demosets: Sequence[DemoSet],
    summary: str,
    description: str,
    n: int,
    lm: Any,
    *,
    seed: int = 0,
) -> Proposals:
    """Per predictor: the original instruction, then ``n - 1`` grounded proposals (fewer
    when one is skipped or repeats the original)."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    skipped = 0
    for name, predictor in program.named_predictors():
        jobs = []
        for i in range(1, n):
            demos = demosets[i % len(demosets)].demos.get(name, ()) if demosets else ()
            shown = "\n".join(str(dict(d)) for d in list(demos)[:3]) or "(none)"
            jobs.append(_propose_one(predictor, summary, description, shown, rng.choice(TIPS), i))

        async def gather(jobs: list[Any] = jobs) -> list[str | None]:
            return list(await asyncio.gather(*jobs))

        with context(lm=lm, labels={"stage": "propose"}):
            proposals = run_sync(gather())
        skipped += sum(p is None for p in proposals)
        unique = [predictor.signature.instructions]
        unique += [p for p in proposals if p and p not in unique]
        out[name] = unique
    return Proposals(out, skipped)


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
