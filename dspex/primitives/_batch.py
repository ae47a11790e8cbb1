"""``Parallel`` and ``Module.batch``: calls over many inputs in threads, as DSPy's.

One executor serves both: ``Module.batch(examples)`` is ``Parallel`` over
``(program, example.inputs())`` pairs. Each worker runs in a copy of the caller's context, so
``dspex.context`` settings (LM, callbacks, trace recording, labels) apply inside it.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dspex.errors import DataError

if TYPE_CHECKING:
    from dspex.primitives._example import Example
    from dspex.primitives._module import Module

__all__ = ["Parallel", "run_batch"]

_log = logging.getLogger("dspex.module")

DEFAULT_THREADS = 8
DEFAULT_MAX_ERRORS = 10  # DSPy's settings.max_errors


class Parallel:
    """Runs ``(module, example)`` pairs in parallel threads (DSPy's ``Parallel``).

    An example is a ``dspex.Example`` (called with its ``inputs()``, or passed whole when
    ``access_examples=False``), a ``dict`` (keyword arguments), a ``tuple`` (positional
    arguments) or, for a nested ``Parallel``, a ``list`` of pairs. A pair whose call raises gets
    ``None`` as its result; once ``max_errors`` calls have failed the remaining pairs are
    skipped and the call raises ``RuntimeError`` from the last error.

    Args:
        num_threads: threads to use (default: ``dspex.settings.num_threads``, else 8).
        max_errors: failures after which it stops (default: ``dspex.settings.max_errors``,
            else 10).
        access_examples: call modules with an ``Example``'s inputs rather than the example.
        return_failed_examples: also return the failed examples and their exceptions.
        provide_traceback: log each failure with its traceback (default:
            ``dspex.settings.provide_traceback``).
        disable_progress_bar, timeout, straggler_limit: accepted for DSPy compatibility; dspex
            shows no progress bar and does not re-submit slow calls (the LM has its own
            timeouts and retries).

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> qa = dspex.Predict("question -> answer", lm=DummyLM({"Spain": {"answer": "Madrid"},
        ...                                                      "3 * 4": {"answer": "12"}}))
        >>> pairs = [(qa, {"question": "Capital of Spain?"}), (qa, {"question": "3 * 4?"})]
        >>> [p.answer for p in dspex.Parallel(num_threads=2)(pairs)]
        ['Madrid', '12']
    """

    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        access_examples: bool = True,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: int = 120,
        straggler_limit: int = 3,
    ) -> None:
        _check_count("num_threads", num_threads, low=1)
        _check_count("max_errors", max_errors, low=0)
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.access_examples = access_examples
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = provide_traceback
        self.disable_progress_bar = disable_progress_bar
        self.timeout = timeout
        self.straggler_limit = straggler_limit

    def __call__(
        self, exec_pairs: Sequence[tuple[Any, Any]], num_threads: int | None = None
    ) -> Any:
        return self.forward(exec_pairs, num_threads)

    def forward(self, exec_pairs: Sequence[tuple[Any, Any]], num_threads: int | None = None) -> Any:
        """Run every pair; the results in order (with ``return_failed_examples``, the tuple
        ``(results, failed_examples, exceptions)``)."""
        _check_count("num_threads", num_threads, low=1)
        calls = [self._call_for(pair, i) for i, pair in enumerate(exec_pairs)]
        outcome = execute(
            calls,
            num_threads=num_threads or self.num_threads,
            max_errors=self.max_errors,
            provide_traceback=self.provide_traceback,
        )
        if self.return_failed_examples:
            failed = [exec_pairs[i][1] for i in outcome.failed_indices]
            return outcome.results, failed, outcome.exceptions
        return outcome.results

    def _call_for(self, pair: Any, i: int) -> Callable[[], Any]:
        """The call for one pair, checked before anything runs."""
        from dspex.primitives._example import Example

        if not isinstance(pair, tuple | list) or len(pair) != 2 or not callable(pair[0]):
            raise DataError(
                f"Parallel: item {i} must be a (module, example) pair, got {type(pair).__name__}."
            )
        module, example = pair
        if isinstance(example, Example):
            if self.access_examples:
                inputs = Example.to_dict(example.inputs())
                return lambda: module(**inputs)
            return lambda: module(example)
        if isinstance(example, Mapping):
            return lambda: module(**example)
        if isinstance(example, list) and isinstance(module, Parallel):
            return lambda: module(example)
        if isinstance(example, tuple):
            return lambda: module(*example)
        raise DataError(
            f"Parallel: item {i} has a {type(example).__name__} example; use a dspex.Example, "
            "a dict of keyword arguments, a tuple of positional arguments, or a list of pairs "
            "for a nested Parallel."
        )


@dataclass
class Outcome:
    """What :func:`execute` returns: results in order (``None`` where a call failed)."""

    results: list[Any]
    failed_indices: list[int] = field(default_factory=list)
    exceptions: list[BaseException] = field(default_factory=list)


def execute(
    calls: Sequence[Callable[[], Any]],
    *,
    num_threads: int | None,
    max_errors: int | None,
    provide_traceback: bool | None,
) -> Outcome:
    """Run ``calls`` in threads, each in a copy of this context; stop after ``max_errors``."""
    from dspex._settings import current

    settings = current()
    limit = max_errors if max_errors is not None else _setting(settings, "max_errors")
    threads = num_threads or _setting(settings, "num_threads")
    traceback = settings.provide_traceback if provide_traceback is None else provide_traceback
    outcome = Outcome(results=[None] * len(calls))
    lock = threading.Lock()
    stop = threading.Event()

    def run(i: int) -> None:
        if stop.is_set():
            return
        try:
            outcome.results[i] = calls[i]()
        except Exception as e:
            with lock:
                outcome.failed_indices.append(i)
                outcome.exceptions.append(e)
                if len(outcome.exceptions) >= limit:
                    stop.set()
            hint = "" if traceback else " Set provide_traceback=True for the traceback."
            _log.error("Error for item %d: %s.%s", i, e, hint, exc_info=bool(traceback))

    workers = max(1, min(threads, len(calls) or 1))
    with concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix="dspex-parallel"
    ) as pool:
        futures = [pool.submit(contextvars.copy_context().run, run, i) for i in range(len(calls))]
        concurrent.futures.wait(futures)
    if stop.is_set():
        raise RuntimeError(
            f"Execution cancelled: {len(outcome.exceptions)} of {len(calls)} calls failed "
            f"(max_errors={limit}). Raise max_errors, or fix the first error logged above."
        ) from outcome.exceptions[-1]
    order = sorted(range(len(outcome.failed_indices)), key=outcome.failed_indices.__getitem__)
    outcome.failed_indices = [outcome.failed_indices[j] for j in order]
    outcome.exceptions = [outcome.exceptions[j] for j in order]
    return outcome


def run_batch(
    program: Module,
    examples: Sequence[Example],
    *,
    num_threads: int | None,
    max_errors: int | None,
    return_failed_examples: bool,
    provide_traceback: bool | None,
) -> Any:
    """See :meth:`dspex.Module.batch`: the executor of ``Parallel`` over the examples' inputs."""
    inputs = [_inputs(ex, i) for i, ex in enumerate(examples)]
    outcome = execute(
        [functools.partial(program, **kw) for kw in inputs],
        num_threads=num_threads,
        max_errors=max_errors,
        provide_traceback=provide_traceback,
    )
    if return_failed_examples:
        failed = [examples[i] for i in outcome.failed_indices]
        return outcome.results, failed, outcome.exceptions
    return outcome.results


def _inputs(example: Example, i: int) -> dict[str, Any]:
    from dspex.primitives._example import Example

    if isinstance(example, Example):
        return Example.to_dict(example.inputs())
    if isinstance(example, Mapping):
        return dict(example)
    raise DataError(f"batch: item {i} is a {type(example).__name__}, not a dspex.Example.")


def _setting(settings: Any, name: str) -> int:
    value = getattr(settings, name, None)
    if isinstance(value, int):
        return value
    return DEFAULT_MAX_ERRORS if name == "max_errors" else DEFAULT_THREADS


def _check_count(name: str, value: Any, *, low: int) -> None:
    from dspex.errors import UserError

    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise UserError(f"Parallel({name}=...) must be an int >= {low} or None, got {value!r}.")
