"""``Evaluate``: run a program over a devset concurrently and score it with a metric."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from dspex._runtime import run_sync
from dspex.callbacks import active, observed
from dspex.errors import BudgetExceededError, DataError, EvaluationError, UserError
from dspex.evaluate._result import EvaluationResult, EvaluationRow
from dspex.primitives import Example, Module, Prediction, Usage

__all__ = ["Evaluate", "Metric"]


class Metric(Protocol):
    """``metric(example, prediction, trace=None) -> float | bool`` (sync or async)."""

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


class Evaluate:
    """Evaluate a program on a devset.

    Args:
        devset: examples with declared inputs.
        metric: ``metric(example, prediction, trace=None) -> float | bool``.
        concurrency: how many examples run at once (asyncio tasks sharing one connection pool).
        max_errors: stop with ``EvaluationError`` once more than this many examples fail;
            ``None`` never stops. Failed examples are reported as errors, not scored.
        progress: show a progress bar.

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
        failures: list[tuple[Any, BaseException]] = []
        sem = asyncio.Semaphore(self.concurrency)
        bar = _Progress(len(devset), self.progress)

        async def run_one(i: int, ex: Example) -> None:
            async with sem:
                rows[i] = row = await _evaluate_row(program, metric, ex, _row_id(ex, i))
            if row.error is not None:
                failures.append((row.row_id, row.exception or RuntimeError(row.error)))
            bar.advance(row)
            if self.max_errors is not None and len(failures) > self.max_errors:
                raise _TooManyErrors()

        tasks = [asyncio.ensure_future(run_one(i, ex)) for i, ex in enumerate(devset)]
        try:
            await asyncio.gather(*tasks)
        except _TooManyErrors:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise EvaluationError(
                _too_many_message(failures, self.max_errors), failures=failures
            ) from None
        finally:
            bar.close()
        done = [r for r in rows if r is not None]
        return EvaluationResult(rows=done, elapsed_s=time.perf_counter() - started)


class _TooManyErrors(Exception):
    pass


def _too_many_message(failures: list[tuple[Any, BaseException]], max_errors: int | None) -> str:
    shown = "\n".join(f"  row {rid}: {type(e).__name__}: {str(e)[:300]}" for rid, e in failures[:5])
    return (
        f"Evaluation stopped: {len(failures)} examples failed (max_errors={max_errors}). "
        f"First failures:\n{shown}\nFix the cause, or raise max_errors to keep going."
    )


async def _evaluate_row(
    program: Module, metric: Callable[..., Any], example: Example, row_id: Any
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
        value = float(score)
    except Exception as e:
        return EvaluationRow.failed(row_id, example, e, time.perf_counter() - started, pred)
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
