"""Bootstrapping demos: run a teacher over the trainset and keep the traces that pass.

DSPy bootstraps one example at a time. Here the teacher runs over the trainset in windows
of as many examples as passes are still needed (at most ``concurrency``), so it tries the
same examples DSPy does and no more; the result is deterministic because demos are taken
from the first successes *in trainset order*, whatever order the calls finish in.

A metric that raises on an example is called once more; if it raises again, that example is
skipped (logged, and counted in the demo set's ``stats["skipped"]``), not the whole run. A
programming error (``TypeError``, ``AttributeError``, ``KeyError``) or a dspex error is not
retried: it would fail the same way on every example.

An exception the teacher program raises on an example (other than a parse or LM error, a
programming error or a dspex error, see above) is counted, as DSPy counts it: the example is
skipped until ``max_errors`` examples have failed, and then the error is raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspex._redact import redact_text
from dspex._runtime import run_sync
from dspex._settings import context, current
from dspex.callbacks import Callback, Span
from dspex.errors import DspexError, LMError, ParseError
from dspex.optimize._demos import DemoSet, to_jsonable
from dspex.optimize._metric import PROGRAMMING_ERRORS
from dspex.primitives import Example, Module, Prediction

__all__ = ["BootstrapSettings", "bootstrap_demos", "one_demo_per_example", "run_with_trace"]

_log = logging.getLogger("dspex.optimize")

# A metric raising a programming error is broken for every example: retrying it, or skipping
# the example, would only hide the bug behind an optimization without demos. The flows' metric
# raises those as a MetricError (a dspex error); a metric passed in directly, as they are.
_NOT_RETRIED: tuple[type[Exception], ...] = (DspexError, *PROGRAMMING_ERRORS)

Trace = list[tuple[str, dict[str, Any], dict[str, Any]]]


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
        max_errors: teacher failures after which the run stops with the last one;
            ``None``: ``dspex.settings.max_errors``, else DSPy's default of 10.
    """

    max_bootstrapped_demos: int = 4
    max_labeled_demos: int = 16
    max_rounds: int = 1
    metric_threshold: float | None = None
    concurrency: int = 16
    seed: int = 0
    max_errors: int | None = None


DEFAULT_MAX_ERRORS = 10  # DSPy's settings.max_errors


def _passes(score: Any, threshold: float | None) -> bool:
    return float(score) >= threshold if threshold is not None else bool(score)


class _MetricFailed(Exception):
    """The metric raised on an example twice: the example is skipped."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error


class _TeacherFailed(Exception):
    """The teacher program raised on an example: counted against ``max_errors``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error


async def _call(
    metric: Callable[..., Any], example: Example, prediction: Prediction, trace: Trace
) -> Any:
    score = metric(example, prediction, trace)
    return await score if inspect.isawaitable(score) else score


async def _score(
    metric: Callable[..., Any], example: Example, prediction: Prediction, trace: Trace
) -> Any:
    """The metric's value, calling it once more when it raises (a grader that timed out, a
    flaky judge); ``_MetricFailed`` when the second call raises too. A dspex error keeps its
    own handling and a programming error stops the run: neither is retried."""
    try:
        return await _call(metric, example, prediction, trace)
    except _NOT_RETRIED:
        raise
    except Exception:
        pass  # called once more, below
    try:
        return await _call(metric, example, prediction, trace)
    except _NOT_RETRIED:
        raise
    except Exception as e:
        raise _MetricFailed(e) from e


async def _try_example(
    teacher: Module,
    example: Example,
    metric: Callable[..., Any],
    settings: BootstrapSettings,
) -> tuple[Trace | None, int, _MetricFailed | _TeacherFailed | None]:
    """Up to ``max_rounds`` attempts on one example; returns the passing trace, attempts,
    and why the example was skipped (the metric raised twice, the teacher raised), if it
    was."""
    for round_idx in range(settings.max_rounds):
        program = teacher if round_idx == 0 else _fresh_sampling(teacher, round_idx)
        try:
            try:
                prediction, trace = await run_with_trace(program, example)
            except _NOT_RETRIED:  # parse and LM errors are handled below
                raise
            except Exception as e:
                return None, round_idx + 1, _TeacherFailed(e)
            score = await _score(metric, example, prediction, trace)
        except _MetricFailed as e:
            return None, round_idx + 1, e
        except (ParseError, LMError) as e:
            if isinstance(e, LMError) and not e.retryable:
                raise
            continue  # an unusable answer is a failed attempt, not a failed bootstrap
        if _passes(score, settings.metric_threshold):
            return trace, round_idx + 1, None
    return None, settings.max_rounds, None


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
) -> tuple[dict[int, Trace], int, int]:
    """Passing traces by trainset index, examples tried, examples skipped."""
    found: dict[int, Trace] = {}
    tried = skipped = errors = 0
    max_errors = _max_errors(settings)
    start = 0
    while start < len(trainset) and len(found) < settings.max_bootstrapped_demos:
        # No more examples in flight than passes still needed: the examples tried are then
        # exactly those DSPy's one-at-a-time loop tries (no call past the last needed pass),
        # and so are the examples left for the labeled top-up.
        need = settings.max_bootstrapped_demos - len(found)
        window = max(1, min(settings.concurrency, need))
        batch = list(enumerate(trainset))[start : start + window]
        start += window
        results = await asyncio.gather(
            *(_try_example(_without_example(teacher, ex), ex, metric, settings) for _, ex in batch)
        )
        tried += len(batch)
        for (idx, example), (trace, _attempts, failed) in zip(batch, results, strict=True):
            if trace is not None:
                found[idx] = trace
            if isinstance(failed, _TeacherFailed):
                errors += 1
                if errors >= max_errors:
                    raise failed.error
                _log.error(
                    "Bootstrapping skipped trainset row %r: the teacher raised %s (%s); %d of "
                    "max_errors=%d.",
                    example.get("id", idx),
                    type(failed.error).__name__,
                    redact_text(str(failed.error))[:200],
                    errors,
                    max_errors,
                )
                skipped += 1
            elif failed is not None:
                skipped += 1
                _log.warning(
                    "Bootstrapping skipped trainset row %r: the metric raised %s twice (%s).",
                    example.get("id", idx),
                    type(failed.error).__name__,
                    redact_text(str(failed.error))[:200],
                )
    return found, tried, skipped


def _max_errors(settings: BootstrapSettings) -> int:
    if settings.max_errors is not None:
        return settings.max_errors
    ambient = current().max_errors
    return ambient if ambient is not None else DEFAULT_MAX_ERRORS


def one_demo_per_example(demos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The demo kept from a predictor called several times on one example (a ReAct step per
    tool call), as DSPy keeps it: the last call (for ReAct: the whole trajectory, then
    ``finish``) or, half the time, one of the earlier ones, chosen by a hash of the calls."""
    if len(demos) == 1:
        return demos[0]
    text = json.dumps(list(demos), sort_keys=True, ensure_ascii=False, default=str)
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    return rng.choice(demos[:-1]) if rng.random() < 0.5 else demos[-1]


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
    found, tried, skipped = run_sync(_abootstrap(teacher, trainset, metric, settings))
    chosen = sorted(found)[: settings.max_bootstrapped_demos]
    per_predictor: dict[str, list[dict[str, Any]]] = {n: [] for n, _ in student.named_predictors()}
    for idx in chosen:
        calls: dict[str, list[dict[str, Any]]] = {}
        for name, inputs, outputs in found[idx]:
            if name in per_predictor:
                calls.setdefault(name, []).append(to_jsonable({**inputs, **outputs}))
        for name, demos in calls.items():
            per_predictor[name].append(one_demo_per_example(demos))
    rest = [ex for i, ex in enumerate(trainset) if i not in found]
    random.Random(settings.seed).shuffle(rest)
    for demos in per_predictor.values():
        room = max(0, settings.max_labeled_demos - len(demos))
        demos.extend(to_jsonable(ex.to_dict()) for ex in rest[:room])
    return DemoSet(
        demos={k: tuple(v) for k, v in per_predictor.items()},
        label=label,
        stats={
            "tried": tried,
            "bootstrapped": len(chosen),
            "passed": len(found),
            "skipped": skipped,
        },
    )
