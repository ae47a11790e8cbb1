"""``Module.batch``: a program over many examples in parallel threads, as DSPy's."""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dspex.errors import DataError

if TYPE_CHECKING:
    from dspex.primitives._example import Example
    from dspex.primitives._module import Module

__all__ = ["run_batch"]

_log = logging.getLogger("dspex.module")

DEFAULT_THREADS = 8
DEFAULT_MAX_ERRORS = 10


def run_batch(
    program: Module,
    examples: Sequence[Example],
    *,
    num_threads: int | None,
    max_errors: int | None,
    return_failed_examples: bool,
    provide_traceback: bool,
) -> Any:
    """See :meth:`dspex.Module.batch`."""
    from dspex._settings import current

    inputs = [_inputs(ex, i) for i, ex in enumerate(examples)]
    limit = max_errors if max_errors is not None else _settings_max_errors(current())
    results: list[Any] = [None] * len(examples)
    failed: list[Example] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def run(i: int) -> None:
        if stop.is_set():
            return
        try:
            results[i] = program(**inputs[i])
        except Exception as e:
            with lock:
                failed.append(examples[i])
                errors.append(e)
                if len(errors) >= limit:
                    stop.set()
            _log.error("batch: example %d failed: %s", i, e, exc_info=provide_traceback)

    workers = max(1, min(num_threads or DEFAULT_THREADS, len(examples) or 1))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dspex-batch") as pool:
        # Each call runs in a copy of this thread's context: dspex.context settings apply.
        futures = [pool.submit(contextvars.copy_context().run, run, i) for i in range(len(inputs))]
        concurrent.futures.wait(futures)
    if stop.is_set():
        raise RuntimeError(
            f"batch stopped: {len(errors)} of {len(examples)} calls failed (max_errors={limit}). "
            "Raise max_errors, or fix the first error shown above."
        ) from errors[-1]
    if return_failed_examples:
        return results, failed, errors
    return results


def _inputs(example: Example, i: int) -> dict[str, Any]:
    from dspex.primitives._example import Example

    if isinstance(example, Example):
        return Example.to_dict(example.inputs())
    if isinstance(example, Mapping):
        return dict(example)
    raise DataError(f"batch: item {i} is a {type(example).__name__}, not a dspex.Example.")


def _settings_max_errors(settings: Any) -> int:
    value = getattr(settings, "max_errors", None)
    return value if isinstance(value, int) else DEFAULT_MAX_ERRORS
