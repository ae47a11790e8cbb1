"""What every dspex task shares: the resumable cache policy, JSON results, retry rule.

A task's inputs are values (references, fingerprints, settings); the cache key is those
inputs plus the task's source, so the same run started again finds every finished task's
persisted JSON result and skips it. ``concurrency`` is left out of the key: running again with
more parallelism must not redo finished work. So is ``runtime``: where the run records its
traces and which LM rate limit it obeys, for tasks that run in another process (a Dask
worker), where the flow's context does not reach.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE

from dspex._redact import redacted_errors
from dspex._settings import context
from dspex.errors import LMError
from dspex.lm import default_cache
from dspex.optimize import DatasetSpec, RunInputs
from dspex.optimize._refs import resolve, resolve_metric, resolve_program
from dspex.primitives import Example, Module
from dspex.traces import record as record_traces

__all__ = [
    "RESUMABLE",
    "RunContext",
    "TaskRuntime",
    "durable_lm_cache",
    "retry_if_retryable",
    "run_context",
    "runtime_for",
    "task_options",
]

RESUMABLE = (INPUTS - "concurrency" - "runtime") + TASK_SOURCE


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only what may succeed on a second try."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the state holds no readable result: do not guess
        return False
    return isinstance(exc, LMError) and exc.retryable


def task_options(**overrides: Any) -> dict[str, Any]:
    """Options for tasks whose results resume a run."""
    return {
        "cache_policy": RESUMABLE,
        "persist_result": True,
        "result_serializer": "json",
        "retries": 2,
        "retry_delay_seconds": 5,
        "retry_condition_fn": retry_if_retryable,
        **overrides,
    }


@dataclass(frozen=True)
class RunContext:
    """The live objects a task works with, resolved from its value inputs."""

    program: Module
    teacher: Module | None
    trainset: list[Example]
    valset: list[Example]
    metric: Any
    lm: Any


@dataclass(frozen=True)
class TaskRuntime:
    """Where a run records its traces and which LM rate limit it obeys: what a task running
    in another process (a Dask worker), out of reach of the flow's context, needs to
    re-create them. A task argument left out of every cache key."""

    trace_run_id: str
    runs_dir: str
    lm_rate_limit: str | None
    flow_process: str


def _load(spec: DatasetSpec | None) -> list[Example]:
    return spec.load() if spec is not None else []


@contextmanager
def run_context(
    run: RunInputs,
    runtime: TaskRuntime | None = None,
    **labels: Any,
) -> Iterator[RunContext]:
    """Resolve a run's references and enter its LM and labels for the task's LM calls.

    In the flow's own process the run's trace recorder and LM throttle are already in the
    context. Elsewhere (a Dask worker) ``runtime`` (see :func:`runtime_for`) re-creates them:
    the task records its trace rows into the run's directory itself, labelled with the
    worker that made them, and takes slots of the same rate limit.

    Whatever the task raises leaves with registered secrets scrubbed from its text (a metric
    whose error quotes the API key): Prefect writes it to the task's state message, result
    file and logs.
    """
    with ExitStack() as stack:
        stack.enter_context(redacted_errors())
        if runtime is not None:
            labels = {**_enter_runtime(stack, runtime), **labels}
        stack.enter_context(durable_lm_cache())
        yield stack.enter_context(_resolved(run, labels))


WORKER = f"{socket.gethostname()}:{os.getpid()}"


def runtime_for(trace_run_id: str, runs_dir: Any, lm_rate_limit: str | None) -> TaskRuntime:
    """The ``runtime`` task argument of a run started in this process."""
    return TaskRuntime(
        trace_run_id=trace_run_id,
        runs_dir=str(runs_dir),
        lm_rate_limit=lm_rate_limit,
        flow_process=WORKER,
    )


def _enter_runtime(stack: ExitStack, runtime: TaskRuntime) -> dict[str, Any]:
    """Recorder and throttle for a task running outside the flow's process."""
    from dspex._settings import current
    from dspex.traces import TraceRecorder

    if runtime.flow_process == WORKER:
        return {}  # the flow's process: its context already has both
    settings = current()
    if not any(isinstance(cb, TraceRecorder) for cb in settings.callbacks):
        stack.enter_context(record_traces(run_id=runtime.trace_run_id, runs_dir=runtime.runs_dir))
    if runtime.lm_rate_limit and settings.lm_throttle is None:
        from dspex.tasks.limits import lm_rate_limit

        stack.enter_context(lm_rate_limit(runtime.lm_rate_limit))
    return {"worker": WORKER}


@contextmanager
def _resolved(run: RunInputs, labels: Mapping[str, Any]) -> Iterator[RunContext]:
    lm = None
    if run.lm_ref:
        lm = resolve(run.lm_ref)
    elif run.lm is not None:
        lm = run.lm.build()  # credentials are read here, in the task's process
    teacher_ref = run.settings.get("teacher")
    ctx = RunContext(
        program=resolve_program(run.program),
        teacher=resolve_program(teacher_ref) if teacher_ref else None,
        trainset=_load(run.trainset),
        valset=_load(run.valset),
        metric=resolve_metric(run.metric),
        lm=lm,
    )
    overrides: dict[str, Any] = {"labels": labels}
    if lm is not None:
        overrides["lm"] = lm
    with context(**overrides):
        yield ctx


@contextmanager
def durable_lm_cache() -> Iterator[None]:
    """While a flow runs, LM cache writes commit before each call returns: a killed run
    loses no finished LM call, so its resume repeats none.

    A context setting, not a switch on the cache: other threads (another task on the same
    worker, a notebook) keep their own durability.
    """
    cache = default_cache()
    if cache is not None:
        cache.flush()  # what earlier calls wrote is on disk too
    with context(lm_cache_durable=True):
        yield
