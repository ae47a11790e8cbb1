"""``Evaluate``: run a program over a devset concurrently and score it with a metric."""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from dspex._redact import redact_text
from dspex._runtime import bounded_gather, in_loop_thread, run_sync
from dspex._settings import current
from dspex.callbacks import active, observed
from dspex.errors import (
    BudgetExceededError,
    EvaluationError,
    MetricError,
    UnknownSettingError,
    UserError,
)
from dspex.evaluate import _report
from dspex.evaluate._checks import (
    bool_style,
    checked_score,
    row_id_of,
    validate_devset,
    validate_labels,
)
from dspex.evaluate._result import EvaluationResult, EvaluationRow
from dspex.primitives import Example, Module, Prediction, Usage

__all__ = ["Evaluate", "Metric"]

_log = logging.getLogger("dspex.evaluate")

Program: TypeAlias = Module | Callable[..., Any]
"""What ``Evaluate`` runs: a module, or (as in DSPy) any function of an example's inputs."""


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


_KNOWN_ARGS = (
    "devset",
    "metric",
    "num_threads",
    "display_progress",
    "display_table",
    "max_errors",
    "provide_traceback",
    "failure_score",
    "save_as_csv",
    "save_as_json",
    "concurrency",
    "progress",
    "return_all_scores",
)


def _check_extra(kwargs: dict[str, Any]) -> None:
    """DSPy's retired ``return_outputs`` fails as in DSPy; ``return_all_scores`` is accepted
    (every score is in ``result.results``); any other name is a typo."""
    if "return_outputs" in kwargs:
        raise UserError(
            "Evaluate(return_outputs=...) is no longer supported (as in DSPy 3): the outputs "
            "are always in result.results, as (example, prediction, score) triples."
        )
    unknown = sorted(set(kwargs) - {"return_all_scores"})
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, _KNOWN_ARGS, n=1)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        raise UnknownSettingError(
            f"Evaluate has no argument {', '.join(hints)}. Its arguments: {', '.join(_KNOWN_ARGS)}."
        )


@dataclass(frozen=True)
class _Options:
    """One call's options: the call's arguments, else ``Evaluate``'s, else the settings."""

    devset: list[Example]
    metric: Metric | Callable[..., Any]
    concurrency: int
    progress: bool
    max_errors: int | None
    provide_traceback: bool
    display_table: bool | int
    save_as_csv: str | None
    save_as_json: str | None


class Evaluate:
    """Evaluate a program on a devset: DSPy's ``Evaluate``, with dspex's checks and rows.

    Args:
        devset: examples with declared inputs.
        metric: ``metric(example, prediction, trace=None) -> float | bool`` (or
            ``metric(example, prediction)``); may instead be given to the call.
        num_threads: how many examples run at once (DSPy's name for ``concurrency``);
            ``None``: ``dspex.settings.num_threads``, else 16. With 1, examples run one after
            the other in the calling thread, metric included.
        display_progress: show a progress bar (DSPy's name for ``progress``; default on).
        display_table: print the results table after the run: ``True`` for every row, a
            number for the first rows.
        max_errors: stop with ``EvaluationError`` once this many examples have failed (as
            DSPy counts); ``None``: ``dspex.settings.max_errors``, else never stop.
        provide_traceback: log each failed example's traceback, not only its error
            (``None``: ``dspex.settings.provide_traceback``).
        failure_score: the score a failed example counts as in ``result.score`` and
            ``result.results``.
        save_as_csv / save_as_json: write one record per example (its fields, the
            prediction's, and the score under the metric's name) to this file.
        concurrency / progress: dspex's names for ``num_threads`` / ``display_progress``.

    Raises:
        DataError: (before any LM call) rows without declared inputs, without an input the
            program needs, or without a label the metric declares in ``required_labels``.
        MetricError: the metric returned NaN, a non-number, or a value outside [0, 1] from a
            metric annotated ``-> bool``; the message names the row. A ``MetricError`` the
            metric raises itself stops the evaluation too.
        EvaluationError: ``max_errors`` examples failed; it names the failed rows and their
            error types and keeps the scores computed before the stop.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> dev = [dspex.Example(question="1+1?", answer="2").with_inputs("question")]
        >>> program = dspex.Predict("question -> answer", lm=DummyLM([{"answer": "2"}]))
        >>> result = dspex.Evaluate(devset=dev, metric=lambda e, p, t=None: e.answer == p.answer,
        ...                         display_progress=False)(program)
        >>> result.score
        100.0
    """

    def __init__(
        self,
        *,
        devset: Sequence[Example],
        metric: Metric | Callable[..., Any] | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int = False,
        max_errors: int | None = None,
        provide_traceback: bool | None = None,
        failure_score: float = 0.0,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
        concurrency: int | None = None,
        progress: bool | None = None,
        **kwargs: Any,
    ) -> None:
        _check_extra(kwargs)
        for name, value in (("num_threads", num_threads), ("concurrency", concurrency)):
            if value is not None and value < 1:
                raise UserError(f"Evaluate({name}={value}): use 1 or more.")
        if num_threads is not None and concurrency is not None and num_threads != concurrency:
            raise UserError(
                f"Evaluate(num_threads={num_threads}, concurrency={concurrency}): these are "
                "two names for one setting; pass one of them."
            )
        if max_errors is not None and max_errors < 0:
            raise UserError(f"Evaluate(max_errors={max_errors}): use 0 or more, or None.")
        self.devset = list(devset)
        self.metric = metric
        self.num_threads = num_threads
        self.concurrency = concurrency if concurrency is not None else num_threads
        shown = display_progress if display_progress is not None else progress
        self.display_progress = self.progress = shown if shown is not None else True
        self.display_table = display_table
        self.max_errors = max_errors
        self.provide_traceback = provide_traceback
        self.failure_score = failure_score
        self.save_as_csv = save_as_csv
        self.save_as_json = save_as_json

    def _options(
        self,
        metric: Metric | Callable[..., Any] | None,
        devset: Sequence[Example] | None,
        num_threads: int | None,
        display_progress: bool | None,
        display_table: bool | int | None,
        save_as_csv: str | None,
        save_as_json: str | None,
    ) -> _Options:
        chosen = metric if metric is not None else self.metric
        if chosen is None:
            raise UserError(
                "Evaluate needs a metric: pass metric= to Evaluate(...) or to the call."
            )
        if num_threads is not None and num_threads < 1:
            raise UserError(f"Evaluate(...)(num_threads={num_threads}): use 1 or more.")
        ambient = current()
        threads = num_threads or self.concurrency or ambient.num_threads or DEFAULT_CONCURRENCY
        traceback = self.provide_traceback
        return _Options(
            devset=list(devset) if devset is not None else self.devset,
            metric=chosen,
            concurrency=threads,
            progress=display_progress if display_progress is not None else self.progress,
            max_errors=self.max_errors if self.max_errors is not None else ambient.max_errors,
            provide_traceback=traceback if traceback is not None else ambient.provide_traceback,
            display_table=display_table if display_table is not None else self.display_table,
            save_as_csv=save_as_csv if save_as_csv is not None else self.save_as_csv,
            save_as_json=save_as_json if save_as_json is not None else self.save_as_json,
        )

    def __call__(
        self,
        program: Program,
        metric: Metric | Callable[..., Any] | None = None,
        devset: Sequence[Example] | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int | None = None,
        callback_metadata: Mapping[str, Any] | None = None,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
    ) -> EvaluationResult:
        """Evaluate ``program``; the arguments override ``Evaluate``'s for this call.

        Args:
            program: a ``dspex.Module``, or (as in DSPy) any function of an example's inputs.
            metric, devset, num_threads, display_progress, display_table, save_as_csv,
                save_as_json: as for ``Evaluate``, for this call only (DSPy's order, so
                ``evaluate(program, metric, devset)`` works).
            callback_metadata: accepted for DSPy code; dspex's callbacks receive the
                ``Evaluate`` and the program instead.
        """
        opts = self._options(
            metric, devset, num_threads, display_progress, display_table, save_as_csv, save_as_json
        )
        if opts.concurrency > 1 or in_loop_thread():
            return run_sync(self._acall(program, opts))
        # One at a time, as DSPy's num_threads=1: in this thread, program and metric alike.
        self._validate(program, opts)
        callbacks = active()
        if not callbacks:
            result = self._run_here(program, opts)
        else:
            args = (self, program, len(opts.devset))
            with observed(callbacks, "evaluate", type(program).__name__, args, (self,)) as call:
                call.result = result = self._run_here(program, opts)
        _publish(result, opts)
        return result

    async def acall(
        self,
        program: Program,
        metric: Metric | Callable[..., Any] | None = None,
        devset: Sequence[Example] | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int | None = None,
        callback_metadata: Mapping[str, Any] | None = None,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
    ) -> EvaluationResult:
        """``__call__`` for asyncio code: the examples run as tasks on the running loop."""
        opts = self._options(
            metric, devset, num_threads, display_progress, display_table, save_as_csv, save_as_json
        )
        return await self._acall(program, opts)

    def _validate(self, program: Program, opts: _Options) -> None:
        validate_devset(opts.devset, program)
        validate_labels(opts.devset, program, opts.metric)

    async def _acall(self, program: Program, opts: _Options) -> EvaluationResult:
        self._validate(program, opts)
        callbacks = active()
        if not callbacks:
            result = await self._run(program, opts)
        else:
            args = (self, program, len(opts.devset))
            with observed(callbacks, "evaluate", type(program).__name__, args, (self,)) as call:
                call.result = result = await self._run(program, opts)
        _publish(result, opts)
        return result

    def _result(self, rows: Sequence[EvaluationRow | None], started: float) -> EvaluationResult:
        done = [r for r in rows if r is not None]
        elapsed = time.perf_counter() - started
        return EvaluationResult(rows=done, elapsed_s=elapsed, failure_score=self.failure_score)

    def _run_here(self, program: Program, opts: _Options) -> EvaluationResult:
        """Run the examples one after the other in this thread."""
        started = time.perf_counter()
        rows: list[EvaluationRow | None] = [None] * len(opts.devset)
        failures: list[EvaluationRow] = []
        scoring = _Scoring(opts.metric)
        bar = _Progress(len(opts.devset), opts.progress)
        try:
            for i, ex in enumerate(opts.devset):
                rows[i] = row = _evaluate_row_here(program, scoring, ex, row_id_of(ex, i))
                _account(row, failures, bar, opts)
        except _TooManyErrors:
            raise _stopped(rows, failures, opts.max_errors) from None
        finally:
            bar.close()
        return self._result(rows, started)

    async def _run(self, program: Program, opts: _Options) -> EvaluationResult:
        started = time.perf_counter()
        devset = opts.devset
        rows: list[EvaluationRow | None] = [None] * len(devset)
        failures: list[EvaluationRow] = []
        bar = _Progress(len(devset), opts.progress)
        scoring = _Scoring(opts.metric)

        # Each example in a task of its own (what one sets in its context never leaks into the
        # next), at most ``concurrency`` at once (bounded_gather: workers, not a semaphore).
        async def one(item: tuple[int, Example]) -> None:
            i, ex = item
            rows[i] = row = await _evaluate_row(program, scoring, ex, row_id_of(ex, i))
            _account(row, failures, bar, opts)

        try:
            await bounded_gather(one, list(enumerate(devset)), opts.concurrency)
        except BaseException as e:
            # Whatever stopped the run (too many errors, a bad metric value, the budget),
            # bounded_gather has cancelled the examples still in flight.
            if isinstance(e, _TooManyErrors):
                raise _stopped(rows, failures, opts.max_errors) from None
            raise
        finally:
            bar.close()
        return self._result(rows, started)


DEFAULT_CONCURRENCY = 16


class _TooManyErrors(Exception):
    pass


def _account(
    row: EvaluationRow, failures: list[EvaluationRow], bar: _Progress, opts: _Options
) -> None:
    """Count a finished row: the progress bar, the failure log, the ``max_errors`` stop."""
    bar.advance(row)
    if row.error is None:
        return
    failures.append(row)
    _log_failure(row, opts.provide_traceback)
    if opts.max_errors is not None and len(failures) >= opts.max_errors:
        raise _TooManyErrors()


def _log_failure(row: EvaluationRow, provide_traceback: bool) -> None:
    """Log a failed example as DSPy does: its error, and the traceback when asked (redacted)."""
    if provide_traceback and row.exception is not None:
        tb = "".join(traceback.format_exception(row.exception))
        _log.error("Evaluate: example %r failed: %s", row.row_id, redact_text(tb))
    else:
        _log.error(
            "Evaluate: example %r failed: %s. Set provide_traceback=True for the traceback.",
            row.row_id,
            row.error,
        )


def _publish(result: EvaluationResult, opts: _Options) -> None:
    """DSPy's outputs after a run: the log line, the table, the CSV and JSON files."""
    n = result.n
    total = sum(float(score) for *_, score in result.results)
    _log.info("Average Metric: %s / %s (%s%%)", total, n, round(100 * total / n, 1) if n else 0)
    if not (opts.display_table or opts.save_as_csv or opts.save_as_json):
        return
    name = _report.metric_name(opts.metric)
    records = _report.records(result.results, name)
    if opts.display_table:
        _report.print_table(records, name, opts.display_table)
    if opts.save_as_csv:
        _report.save_csv(opts.save_as_csv, records)
    if opts.save_as_json:
        _report.save_json(opts.save_as_json, records)


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
        f"Evaluation stopped: {len(failures)} examples failed, reaching "
        f"max_errors={max_errors}. Failed rows (id: error type): {shown}{more}. "
        f"{len(scores)} examples were scored before the stop (err.scores); err.failures has "
        "the error messages (redacted). Fix the cause, or raise max_errors to keep going.",
        failures=failures,
        scores=scores,
    )


def _passes_trace(metric: Callable[..., Any]) -> bool:
    """Whether the metric takes a third, ``trace`` argument; DSPy's Evaluate passes two."""
    try:
        sig = inspect.signature(metric)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(None, None, None)
    except TypeError:
        return False
    return True


class _Scoring:
    """The metric, with how to call it and check its value worked out once per run."""

    def __init__(self, metric: Callable[..., Any]) -> None:
        self.metric = metric
        self.bool_style = bool_style(metric)
        self.passes_trace = _passes_trace(metric)

    def call(self, example: Example, prediction: Any) -> Any:
        if self.passes_trace:
            return self.metric(example, prediction, None)
        return self.metric(example, prediction)

    def row(
        self, row_id: Any, example: Example, pred: Any, value: Any, started: float
    ) -> EvaluationRow:
        # A metric that returns no score is broken for every row: stop, naming this one.
        score = checked_score(value, self.metric, row_id, self.bool_style)
        return EvaluationRow(
            row_id=row_id,
            example=example,
            prediction=pred,
            score=score,
            error=None,
            usage=pred.usage if isinstance(pred, Prediction) else Usage(),
            latency_s=time.perf_counter() - started,
            value=value,
        )


async def _evaluate_row(
    program: Program, scoring: _Scoring, example: Example, row_id: Any
) -> EvaluationRow:
    started = time.perf_counter()
    try:
        if isinstance(program, Module):
            pred = await program.acall(**example.inputs().to_dict())
        else:  # a plain function of the inputs, as DSPy allows: in a worker thread
            pred = await asyncio.to_thread(program, **example.inputs().to_dict())
    except BudgetExceededError:
        raise  # the run is out of budget: stop, rather than report every row as failed
    except Exception as e:  # an example that errors is reported, never scored
        return EvaluationRow.failed(row_id, example, e, time.perf_counter() - started)
    try:
        score = scoring.call(example, pred)
        if type(score) not in _PLAIN_SCORES and inspect.isawaitable(score):
            score = await score
    except MetricError:
        raise  # the metric says it is broken (as the flows' metric does on a TypeError): stop
    except Exception as e:
        return EvaluationRow.failed(row_id, example, e, time.perf_counter() - started, pred)
    return scoring.row(row_id, example, pred, score, started)


# What metrics return, and never awaitable: no need to ask ``inspect.isawaitable``.
_PLAIN_SCORES = (bool, int, float)


def _evaluate_row_here(
    program: Program, scoring: _Scoring, example: Example, row_id: Any
) -> EvaluationRow:
    """:func:`_evaluate_row` in the calling thread (``num_threads=1``)."""
    started = time.perf_counter()
    try:
        pred = program(**example.inputs().to_dict())
    except BudgetExceededError:
        raise
    except Exception as e:
        return EvaluationRow.failed(row_id, example, e, time.perf_counter() - started)
    try:
        score = scoring.call(example, pred)
        if inspect.isawaitable(score):
            score = run_sync(_awaited(score))
    except MetricError:
        raise
    except Exception as e:
        return EvaluationRow.failed(row_id, example, e, time.perf_counter() - started, pred)
    return scoring.row(row_id, example, pred, score, started)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


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
