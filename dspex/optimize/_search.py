"""Candidate demo sets: which ones an optimizer tries, and how each is built.

These are the steps the few-shot flows run as Prefect tasks; each is a plain function of
values and live objects, usable without Prefect.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dspex._settings import context
from dspex.errors import UserError
from dspex.optimize._bootstrap import BootstrapSettings, bootstrap_demos
from dspex.optimize._demos import DemoSet, apply_demos, labeled_demos
from dspex.optimize._params import LMSpec
from dspex.primitives import Example, Module

__all__ = [
    "accept_every_trace",
    "build_candidate",
    "candidate_specs",
    "default_teacher",
    "select_best",
    "teacher_context",
]


def accept_every_trace(example: Example, prediction: Any, trace: Any = None) -> bool:
    """The metric of ``BootstrapFewShot(metric=None)``: as in DSPy, every trace passes."""
    return True


@contextmanager
def teacher_context(teacher_settings: Mapping[str, Any] | None) -> Iterator[None]:
    """Enter DSPy's ``teacher_settings``: ``dspex.context`` settings for the teacher's calls,
    its ``lm`` given as :class:`LMSpec` fields (built here, where the task runs)."""
    overrides = dict(teacher_settings or {})
    if "lm" in overrides:
        overrides["lm"] = LMSpec.model_validate(overrides["lm"]).build()
    with context(**overrides):
        yield


def candidate_specs(optimizer: str, settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The candidates an optimizer evaluates, as JSON values (one Prefect task each)."""
    seed = int(settings.get("seed", 0))
    max_boot = int(settings.get("max_bootstrapped_demos", 4))
    max_labeled = int(settings.get("max_labeled_demos", 16))
    if optimizer == "LabeledFewShot":
        return [{"id": "labeled", "kind": "labeled", "k": int(settings.get("k", 16)), "seed": seed}]
    if optimizer == "BootstrapFewShot":
        return [
            {
                "id": "bootstrap",
                "kind": "bootstrap",
                "shuffle_seed": None,
                "max_bootstrapped_demos": max_boot,
                "seed": seed,
            }
        ]
    if optimizer != "BootstrapFewShotWithRandomSearch":
        raise UserError(f"Unknown few-shot optimizer {optimizer!r}.")
    specs: list[dict[str, Any]] = [
        {"id": "zero-shot", "kind": "zero-shot"},
        {"id": "labeled", "kind": "labeled", "k": max_labeled, "seed": seed},
        {
            "id": "bootstrap",
            "kind": "bootstrap",
            "shuffle_seed": None,
            "max_bootstrapped_demos": max_boot,
            "seed": seed,
        },
    ]
    for i in range(int(settings.get("num_candidate_programs", 8))):
        rng = random.Random(f"{seed}-{i}")
        specs.append(
            {
                "id": f"bootstrap-{i}",
                "kind": "bootstrap",
                "shuffle_seed": rng.randrange(2**31),
                "max_bootstrapped_demos": rng.randint(1, max(1, max_boot)),
                "seed": seed,
            }
        )
    return specs


def default_teacher(
    student: Module, trainset: Sequence[Example], max_labeled: int, seed: int
) -> Module:
    """DSPy's default teacher: the student with labeled demos."""
    if max_labeled <= 0:
        return student.reset_copy()
    return apply_demos(
        student.reset_copy(), labeled_demos(student, trainset, max_labeled, seed=seed)
    )


def build_candidate(
    spec: Mapping[str, Any],
    student: Module,
    teacher: Module | None,
    trainset: Sequence[Example],
    metric: Callable[..., Any] | None,
    settings: Mapping[str, Any],
    *,
    concurrency: int = 16,
) -> DemoSet:
    """The demo set of one candidate spec."""
    kind = spec["kind"]
    if kind == "zero-shot":
        return DemoSet(label="zero-shot")
    if kind == "labeled":
        return labeled_demos(
            student,
            trainset,
            int(spec["k"]),
            seed=int(spec["seed"]),
            label=f"labeled k={spec['k']}",
        )
    if kind != "bootstrap":
        raise UserError(f"Unknown candidate kind {kind!r}.")
    if metric is None:
        raise UserError("Bootstrapping needs a metric: BootstrapFewShot(metric=...).")
    data = list(trainset)
    if spec.get("shuffle_seed") is not None:
        random.Random(spec["shuffle_seed"]).shuffle(data)
    boot = BootstrapSettings(
        max_bootstrapped_demos=int(spec["max_bootstrapped_demos"]),
        max_labeled_demos=int(settings.get("max_labeled_demos", 16)),
        max_rounds=int(settings.get("max_rounds", 1)),
        metric_threshold=settings.get("metric_threshold"),
        concurrency=concurrency,
        seed=int(spec.get("seed", 0)),
        max_errors=settings.get("max_errors"),
    )
    teacher = teacher or default_teacher(student, trainset, boot.max_labeled_demos, boot.seed)
    with teacher_context(settings.get("teacher_settings")):
        return bootstrap_demos(student, teacher, data, metric, boot, label=str(spec["id"]))


def select_best(
    scores: Sequence[tuple[str, float | None]], stop_at_score: float | None = None
) -> str:
    """The id with the highest score; the earliest wins ties (zero-shot before bootstraps).

    With ``stop_at_score``, candidates after the first that scores at least that are left
    out: DSPy evaluates candidates one at a time and stops there, so this is the candidate
    it returns (dspex evaluates them concurrently, so they cost their calls all the same).
    """
    if stop_at_score is not None:
        for i, (_, score) in enumerate(scores):
            if score is not None and score >= stop_at_score:
                scores = scores[: i + 1]
                break
    scored = [(s, -i, cid) for i, (cid, s) in enumerate(scores) if s is not None]
    if not scored:
        raise UserError("No candidate could be evaluated; see the candidates' errors.")
    return max(scored)[2]
