"""The metric as the flows call it: a programming error stops the run.

A metric that raises ``TypeError``, ``AttributeError`` or ``KeyError`` (a misspelt field, a
wrong signature, a missing key) has a bug that fails the same way on every example. Counted
as a failed example, it would let an optimizer spend its LM calls on bootstraps and trials
that all fail; the flows stop at the first one instead, with a :class:`MetricError` naming
the example whose ``__cause__`` is the metric's own exception. Other exceptions keep their
handling (a failed example in an evaluation; a retry, then a skip, in bootstrapping).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from dspex._redact import redact_text
from dspex.errors import DspexError, MetricError

__all__ = ["PROGRAMMING_ERRORS", "stop_on_programming_errors"]

PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (TypeError, AttributeError, KeyError)


def _broken(metric: Callable[..., Any], example: Any, error: Exception) -> MetricError:
    row_id = example.get("id") if hasattr(example, "get") else None
    where = f"the example with id {row_id!r}" if row_id is not None else "an example"
    name = getattr(metric, "__name__", type(metric).__name__)
    shown = redact_text(str(error))
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    return MetricError(
        f"Metric {name} raised {type(error).__name__} on {where}: {shown}. A TypeError, "
        "AttributeError or KeyError from a metric is a bug in it that fails on every "
        "example, so the run stopped here instead of spending LM calls on examples and "
        "trials that would all fail. Fix the metric; try it first on one example: "
        "metric(example, program(**example.inputs()), None).",
        row_id=row_id,
        value=None,
    )


def stop_on_programming_errors(metric: Callable[..., Any]) -> Callable[..., Any]:
    """``metric``, raising :class:`MetricError` (from the original) where it raises a
    programming error. Its name, annotations and attributes (``required_labels``) stay.

    Example:
        >>> def metric(example, prediction, trace=None):
        ...     return example.answer == prediction.anwser
        >>> import dspex
        >>> checked = stop_on_programming_errors(metric)
        >>> try:
        ...     checked(dspex.Example(answer=1), dspex.Prediction(answer=1))
        ... except MetricError as e:
        ...     print(type(e.__cause__).__name__)
        AttributeError
    """

    async def awaited(score: Awaitable[Any], example: Any) -> Any:
        try:
            return await score
        except DspexError:
            raise
        except PROGRAMMING_ERRORS as e:
            raise _broken(metric, example, e) from e

    # Called as the metric is (with or without ``trace``: its signature shows through).
    @functools.wraps(metric)
    def checked(*args: Any, **kwargs: Any) -> Any:
        example = args[0] if args else kwargs.get("example")
        try:
            score = metric(*args, **kwargs)
        except DspexError:
            raise  # a dspex error (a MetricError of its own, an LM error) keeps its meaning
        except PROGRAMMING_ERRORS as e:
            raise _broken(metric, example, e) from e
        return awaited(score, example) if inspect.isawaitable(score) else score

    return checked
