"""``Evaluate``: run a program over a devset concurrently and score it with a metric."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from dspex._redact import redact_text
from dspex._runtime import run_sync
from dspex.callbacks import active, observed
from dspex.errors import BudgetExceededError, DataError, EvaluationError, MetricError, UserError
from dspex.evaluate._result import EvaluationResult, EvaluationRow
from dspex.primitives import Example, Module, Prediction, Usage

__all__ = ["Evaluate", "Metric"]


class Metric(Protocol):
    """``metric(example, prediction, trace=None) -> float | bool`` (sync or async).

    A metric returns a bool or a finite number; one annotated ``-> bool`` must stay in [0, 1].
    It may declare the labels it reads in a ``required_labels`` attribute (see
    :func:`~dspex.evaluate.requires_labels`), so that ``Evaluate`` rejects examples without
    them before any LM call.
    """

    def __call__(
        self, example: Example, prediction: Prediction, trace: Any = None
    ) -> float | bool | Awaitable[float | bool]: ...


def _row_id(example: Example, index: int) -> Any:
    return example.get("id", index) if isinstance(example, Example) else index


def required_inputs(program: Module) -> list[str] | None:
    """The input names a program needs, when they can be known without calling it."""
    from dspex.modules import ChainOfThought, Predict

    if isinstance(program, Predict):
        return list(program.signature.input_fields)
    if isinstance(program, ChainOfThought):
        return list(program.predict.signature.input_fields)
    forward = program.forward if type(program).forward is not Module.forward else program.aforward
    params = inspect.signature(forward).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def validate_devset(devset: Sequence[Example], program: Module) -> None:
    """Reject rows that cannot run, before any LM call, naming the row ids."""
    if not devset:
        raise DataError("The devset is empty; pass at least one Example.")
    no_inputs = [
        _row_id(ex, i) for i, ex in enumerate(devset) if getattr(ex, "input_keys", None) is None
    ]
    if no_inputs:
        raise DataError(
            f"{len(no_inputs)} row(s) have no declared inputs (ids {no_inputs[:20]}); build "
            "examples with Example(...).with_inputs('question', ...) or a dataset loader's "
            "input_keys=.",
            row_ids=no_inputs,
        )
    needed = required_inputs(program)
    if needed is None:
        return
    bad = [
        (_row_id(ex, i), sorted(set(needed) - set(ex.input_keys or ())))
        for i, ex in enumerate(devset)
        if not set(needed) <= set(ex.input_keys or ())
    ]
    if bad:
        missing = sorted({k for _, ks in bad for k in ks})
        raise DataError(
            f"{len(bad)} row(s) lack input(s) {missing} that {type(program).__name__} needs "
            f"(ids {[i for i, _ in bad][:20]}). Fix the data or declare them with with_inputs().",
            row_ids=[i for i, _ in bad],
        )


def program_outputs(program: Module) -> list[str] | None:
    """The output names a program produces, when they can be known without calling it."""
    from dspex.modules import ChainOfThought, Predict

    if isinstance(program, Predict):
        return list(program.signature.output_fields)
    if isinstance(program, ChainOfThought):
        return list(program.predict.signature.output_fields)
    return None


def _metric_name(metric: Callable[..., Any]) -> str:
    return str(getattr(metric, "__name__", type(metric).__name__))


def _label_problems(example: Example, need: Any, outputs: list[str] | None) -> str | None:
    """Why ``example`` lacks a label the metric reads, or ``None`` when it has them all."""
    labels = example.labels()
    if need == "outputs":
        # The labels named like the program's outputs, as exact_match compares them.
        # Without known outputs, any label but the row id will do.
        names = [k for k in labels if (k in outputs if outputs is not None else k != "id")]
        if not any(labels[k] is not None for k in names):
            return f"no label for the outputs {outputs}" if outputs else "no label"
        nones = [k for k in names if labels[k] is None] if outputs is not None else []
    else:
        missing = [k for k in need if k not in labels]
        if missing:
            return f"missing label(s) {missing}"
        nones = [k for k in need if labels[k] is None]
    return f"label(s) {nones} are None" if nones else None


def validate_labels(devset: Sequence[Example], program: Module, metric: Callable[..., Any]) -> None:
    """Reject rows without the labels the metric declares it reads, before any LM call.

    A metric declares them in ``required_labels``: a tuple of label names, or ``"outputs"``
    for the labels named like the program's outputs (``exact_match``). A row lacking them
    would otherwise score 0 without saying why.
    """
    need = getattr(metric, "required_labels", None)
    if need is None:
        return
    outputs = program_outputs(program) if need == "outputs" else None
    problems: dict[str, list[Any]] = {}
    for i, ex in enumerate(devset):
        problem = _label_problems(ex, need, outputs)
        if problem is not None:
            problems.setdefault(problem, []).append(_row_id(ex, i))
    if problems:
        row_ids = [rid for ids in problems.values() for rid in ids]
        detail = "; ".join(f"{p} (ids {ids[:20]})" for p, ids in problems.items())
        raise DataError(
            f"Metric {_metric_name(metric)} needs labels, but {len(row_ids)} row(s) lack them: "
            f"{detail}. Add the labels to those examples or drop the rows; unlabeled rows "
            "would score 0 without telling you.",
            row_ids=row_ids,
        )


def _bool_style(metric: Callable[..., Any]) -> bool:
    """Whether the metric is annotated ``-> bool``, so its scores belong in [0, 1]."""
    try:
        annotation = inspect.signature(metric).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation is bool or annotation == "bool"


def _checked_score(value: Any, metric: Callable[..., Any], row_id: Any, bool_style: bool) -> float:
    """The metric's value as a float; ``MetricError`` naming the row when it is no score."""
    problem = "is not a number"
    if not isinstance(value, str | bytes) and value is not None:
        try:
            score = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if not math.isfinite(score):
                problem = "is not a finite number"
            elif bool_style and not 0.0 <= score <= 1.0:
                problem = "is outside [0, 1], the range of a metric annotated -> bool"
            else:
                return score
    shown = redact_text(repr(value))
    shown = shown if len(shown) <= 80 else shown[:80] + "..."
    raise MetricError(
        f"Metric {_metric_name(metric)} returned {shown} ({type(value).__name__}) for row "
        f"{row_id!r}, which {problem}. A metric must return a bool or a finite number"
        f"{' in [0, 1]' if bool_style else ''}; fix the metric (e.g. return bool(...) or "
        "float(...), and handle the case that produced this value).",
        row_id=row_id,
        value=value,
    )


class Evaluate:
    """Evaluate a program on a devset.

    Args:
        devset: examples with declared inputs.
        metric: ``metric(example, prediction, trace=None) -> float | bool``.
        concurrency: how many examples run at once (asyncio tasks sharing one connection pool).
        max_errors: stop with ``EvaluationError`` once more than this many examples fail;
            ``None`` never stops. Failed examples are reported as errors, not scored.
        progress: show a progress bar.

    Raises:
        DataError: (before any LM call) rows without declared inputs, without an input the
            program needs, or without a label the metric declares in ``required_labels``.
        MetricError: the metric returned NaN, a non-number, or a value outside [0, 1] from a
            metric annotated ``-> bool``; the message names the row. A ``MetricError`` the
            metric raises itself stops the evaluation too.
        EvaluationError: more than ``max_errors`` examples failed; it names the failed rows
            and their error types and keeps the scores computed before the stop.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> dev = [dspex.Example(question="1+1?", answer="2").with_inputs("question")]
        >>> program = dspex.Predict("question -> answer", lm=DummyLM([{"answer": "2"}]))
        >>> result = dspex.Evaluate(devset=dev, metric=lambda e, p, t=None: e.answer == p.answer,
        ...                         progress=False)(program)
        >>> result.score
        100.0
    """

    def __init__(
        self,
        *,
        devset: Sequence[Example],
        metric: Metric | Callable[..., Any],
        concurrency: int = 16,
        max_errors: int | None = None,
        progress: bool = True,
    ) -> None:
        if concurrency < 1:
            raise UserError(f"Evaluate(concurrency={concurrency}): use 1 or more.")
        if max_errors is not None and max_errors < 0:
            raise UserError(f"Evaluate(max_errors={max_errors}): use 0 or more, or None.")
        self.devset = list(devset)
        self.metric = metric
        self.concurrency = concurrency
        self.max_errors = max_errors
        self.progress = progress

    def __call__(self, program: Module, **overrides: Any) -> EvaluationResult:
        return run_sync(self.acall(program, **overrides))

    async def acall(
        self,
        program: Module,
        *,
        devset: Sequence[Example] | None = None,
        metric: Metric | Callable[..., Any] | None = None,
    ) -> EvaluationResult:
        devset = list(devset) if devset is not None else self.devset
        metric = metric or self.metric
        validate_devset(devset, program)
        validate_labels(devset, program, metric)
        callbacks = active()
        if not callbacks:
            return await self._run(program, devset, metric)
        name = type(program).__name__
        with observed(callbacks, "evaluate", name, (self, program, len(devset)), (self,)) as call:
            call.result = result = await self._run(program, devset, metric)
        return result

    async def _run(
        self, program: Module, devset: list[Example], metric: Metric | Callable[..., Any]
    ) -> EvaluationResult:
        started = time.perf_counter()
        rows: list[EvaluationRow | None] = [None] * len(devset)
        failures: list[EvaluationRow] = []
        sem = asyncio.Semaphore(self.concurrency)
        bar = _Progress(len(devset), self.progress)
        bool_style = _bool_style(metric)

        async def run_one(i: int, ex: Example) -> None:
            async with sem:
                row = await _evaluate_row(program, metric, ex, _row_id(ex, i), bool_style)
                rows[i] = row
            if row.error is not None:
                failures.append(row)
            bar.advance(row)
            if self.max_errors is not None and len(failures) > self.max_errors:
                raise _TooManyErrors()

        tasks = [asyncio.ensure_future(run_one(i, ex)) for i, ex in enumerate(devset)]
        try:
            await asyncio.gather(*tasks)
        except BaseException as e:
            # Whatever stopped the run (too many errors, a bad metric value, the budget),
            # the examples still in flight must not keep calling the LM.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(e, _TooManyErrors):
                raise _stopped(rows, failures, self.max_errors) from None
            raise
        finally:
            bar.close()
        done = [r for r in rows if r is not None]
        return EvaluationResult(rows=done, elapsed_s=time.perf_counter() - started)


class _TooManyErrors(Exception):
    pass


def _stopped(
    rows: Sequence[EvaluationRow | None], failed: list[EvaluationRow], max_errors: int | None
) -> EvaluationError:
    """The ``EvaluationError`` for a run stopped at ``max_errors``: row ids and error types in
    the message (never row contents), redacted messages and the scores so far as attributes."""
    failures = [
        (
            r.row_id,
            type(r.exception).__name__ if r.exception is not None else "Error",
            redact_text(str(r.exception)) if r.exception is not None else r.error or "",
        )
        for r in failed
    ]
    scores = {r.row_id: r.score for r in rows if r is not None and r.score is not None}
    shown = ", ".join(f"{rid}: {kind}" for rid, kind, _ in failures[:20])
    more = f", and {len(failures) - 20} more" if len(failures) > 20 else ""
    return EvaluationError(
        f"Evaluation stopped: {len(failures)} examples failed, more than "
        f"max_errors={max_errors}. Failed rows (id: error type): {shown}{more}. "
        f"{len(scores)} examples were scored before the stop (err.scores); err.failures has "
        "the error messages (redacted). Fix the cause, or raise max_errors to keep going.",
        failures=failures,
        scores=scores,
    )


async def _evaluate_row(
    program: Module, metric: Callable[..., Any], example: Example, row_id: Any, bool_style: bool
) -> EvaluationRow:
    started = time.perf_counter()
    try:
        pred = await program.acall(**example.inputs().to_dict())
    except BudgetExceededError:
        raise  # the run is out of budget: stop, rather than report every row as failed
    except Exception as e:  # an example that errors is reported, never scored
        return EvaluationRow.failed(row_id, example, e, time.perf_counter() - started)
    try:
        score = metric(example, pred, None)
        if inspect.isawaitable(score):
            score = await score
    except MetricError:
        raise  # the metric says it is broken (as the flows' metric does on a TypeError): stop
    except Exception as e:
        return EvaluationRow.failed(row_id, example, e, time.perf_counter() - started, pred)
    # A metric that returns no score is broken for every row: stop, naming this one.
    value = _checked_score(score, metric, row_id, bool_style)
    usage = pred.usage if isinstance(pred, Prediction) else Usage()
    return EvaluationRow(
        row_id=row_id,
        example=example,
        prediction=pred,
        score=value,
        error=None,
        usage=usage,
        latency_s=time.perf_counter() - started,
    )


class _Progress:
    """A rich progress bar showing the running score; nothing when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        self._total_score = 0.0
        self._n = 0
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("[bold]Evaluate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            transient=False,
        )
        self._task = self._bar.add_task("", total=total)
        self._bar.start()

    def advance(self, row: EvaluationRow) -> None:
        if self._bar is None:
            return
        self._n += 1
        self._total_score += row.score or 0.0
        self._bar.update(
            self._task, advance=1, description=f"score {100 * self._total_score / self._n:.1f}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
