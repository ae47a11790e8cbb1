"""Bootstrapping demos: run a teacher over the trainset and keep the traces that pass.

DSPy bootstraps one example at a time. Here the teacher runs over the trainset in windows
of ``concurrency`` examples; the result is still deterministic because demos are taken from
the first successes *in trainset order*, whatever order the calls finish in.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspex._runtime import run_sync
from dspex._settings import context, current
from dspex.callbacks import Callback, Span
from dspex.errors import LMError, ParseError
from dspex.optimize._demos import DemoSet, to_jsonable
from dspex.primitives import Example, Module, Prediction

__all__ = ["BootstrapSettings", "bootstrap_demos", "run_with_trace"]


class _TraceCollector(Callback):
    """Collects each predictor's inputs and outputs during one program call."""

    def __init__(self) -> None:
        self.inputs: dict[str, dict[str, Any]] = {}
        self.trace: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def on_module_start(self, span: Span, module: Any, inputs: Mapping[str, Any]) -> None:
        if hasattr(module, "demos"):  # a predictor
            self.inputs[span.span_id] = dict(inputs)

    def on_module_end(
        self, span: Span, module: Any, outputs: Any, error: BaseException | None
    ) -> None:
        inputs = self.inputs.pop(span.span_id, None)
        if inputs is not None and outputs is not None and error is None:
            name = span.name or "self"
            self.trace.append((name, inputs, outputs.to_dict()))


async def run_with_trace(
    program: Module, example: Example
) -> tuple[Prediction, list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """Call ``program`` on the example's inputs, returning its prediction and predictor trace."""
    collector = _TraceCollector()
    with context(callbacks=(*current().callbacks, collector)):
        prediction = await program.acall(**example.inputs().to_dict())
    return prediction, collector.trace


@dataclass(frozen=True)
class BootstrapSettings:
    """What one bootstrap run does.

    Attributes:
        max_bootstrapped_demos: stop once this many examples passed the metric.
        max_labeled_demos: fill each predictor up to this many demos with plain examples.
        max_rounds: tries per example; rounds after the first sample afresh
            (a new rollout id at temperature 1.0).
        metric_threshold: a trace passes when ``metric >= threshold`` (else when truthy).
        concurrency: teacher calls in flight.
        seed: seeds the choice of labeled demos.
    """

    max_bootstrapped_demos: int = 4
    max_labeled_demos: int = 16
    max_rounds: int = 1
    metric_threshold: float | None = None
    concurrency: int = 16
    seed: int = 0


def _passes(score: Any, threshold: float | None) -> bool:
    return float(score) >= threshold if threshold is not None else bool(score)


async def _try_example(
    teacher: Module,
    example: Example,
    metric: Callable[..., Any],
    settings: BootstrapSettings,
) -> tuple[list[tuple[str, dict[str, Any], dict[str, Any]]] | None, int]:
    """Up to ``max_rounds`` attempts on one example; returns the passing trace, attempts."""
    for round_idx in range(settings.max_rounds):
        program = teacher if round_idx == 0 else _fresh_sampling(teacher, round_idx)
        try:
            prediction, trace = await run_with_trace(program, example)
            score = metric(example, prediction, trace)
            if asyncio.iscoroutine(score):
                score = await score
        except (ParseError, LMError) as e:
            if isinstance(e, LMError) and not e.retryable:
                raise
            continue  # an unusable answer is a failed attempt, not a failed bootstrap
        if _passes(score, settings.metric_threshold):
            return trace, round_idx + 1
    return None, settings.max_rounds


def _fresh_sampling(teacher: Module, round_idx: int) -> Module:
    program = teacher.deepcopy()
    for p in program.predictors():
        p.config = {**p.config, "rollout_id": f"bootstrap-round-{round_idx}", "temperature": 1.0}
    return program


def _without_example(teacher: Module, example: Example) -> Module:
    """The teacher, minus the example itself among its demos (it would just be copied)."""
    if not any(example in p.demos for p in teacher.predictors()):
        return teacher
    program = teacher.deepcopy()
    for p in program.predictors():
        p.demos = [d for d in p.demos if d != example]
    return program


async def _abootstrap(
    teacher: Module,
    trainset: Sequence[Example],
    metric: Callable[..., Any],
    settings: BootstrapSettings,
) -> tuple[dict[int, list[tuple[str, dict[str, Any], dict[str, Any]]]], int]:
    found: dict[int, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    tried = 0
    window = max(1, settings.concurrency)
    for start in range(0, len(trainset), window):
        batch = list(enumerate(trainset))[start : start + window]
        results = await asyncio.gather(
            *(_try_example(_without_example(teacher, ex), ex, metric, settings) for _, ex in batch)
        )
        tried += len(batch)
        for (idx, _), (trace, _attempts) in zip(batch, results, strict=True):
            if trace is not None:
                found[idx] = trace
        if len(found) >= settings.max_bootstrapped_demos:
            break
    return found, tried


def bootstrap_demos(
    student: Module,
    teacher: Module,
    trainset: Sequence[Example],
    metric: Callable[..., Any],
    settings: BootstrapSettings,
    *,
    label: str = "bootstrap",
) -> DemoSet:
    """Bootstrapped demos (from passing teacher traces) topped up with labeled examples."""
    found, tried = run_sync(_abootstrap(teacher, trainset, metric, settings))
    chosen = sorted(found)[: settings.max_bootstrapped_demos]
    per_predictor: dict[str, list[dict[str, Any]]] = {n: [] for n, _ in student.named_predictors()}
    for idx in chosen:
        for name, inputs, outputs in found[idx]:
            if name in per_predictor:
                per_predictor[name].append(to_jsonable({**inputs, **outputs}))
    rest = [ex for i, ex in enumerate(trainset) if i not in found]
    random.Random(settings.seed).shuffle(rest)
    for demos in per_predictor.values():
        room = max(0, settings.max_labeled_demos - len(demos))
        demos.extend(to_jsonable(ex.to_dict()) for ex in rest[:room])
    return DemoSet(
        demos={k: tuple(v) for k, v in per_predictor.items()},
        label=label,
        stats={"tried": tried, "bootstrapped": len(chosen), "passed": len(found)},
    )
