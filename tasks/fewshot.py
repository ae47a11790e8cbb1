"""Few-shot tasks: build one candidate's demo set; evaluate one candidate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import task

from dspex.evaluate import Evaluate
from dspex.optimize import DemoSet, RunInputs, apply_demos, build_candidate
from dspex.tasks._common import TaskRuntime, run_context, task_options

__all__ = ["bootstrap_candidate", "evaluate_candidate"]


@task(name="build-candidate", task_run_name="build-{spec[id]}", **task_options())
def bootstrap_candidate(
    run: RunInputs,
    spec: Mapping[str, Any],
    concurrency: int = 16,
    runtime: TaskRuntime | None = None,
) -> dict[str, Any]:
    """The demo set for one candidate spec (zero-shot, labeled, or a bootstrap)."""
    with run_context(run, runtime, stage="bootstrap", candidate=spec["id"]) as ctx:
        demos = build_candidate(
            spec,
            ctx.program,
            ctx.teacher,
            ctx.trainset,
            ctx.metric,
            run.settings,
            concurrency=concurrency,
        )
    return demos.to_dict()


@task(name="evaluate-candidate", task_run_name="evaluate-{candidate_id}", **task_options())
def evaluate_candidate(
    run: RunInputs,
    candidate_id: str,
    demos: Mapping[str, Any],
    concurrency: int = 16,
    runtime: TaskRuntime | None = None,
    rows: Sequence[int] | None = None,
    errors_before: int = 0,
) -> dict[str, Any]:
    """Score one candidate on the valset (the trainset when there is none), or on the
    examples at ``rows`` of it (one rung of a race).

    ``row_scores`` are the per-example scores in ``rows`` order (a failed example scores
    0); ``errors_before``: errors earlier rungs already counted against ``max_errors``.
    """
    with run_context(run, runtime, stage="evaluate", candidate=candidate_id) as ctx:
        program = apply_demos(ctx.program, DemoSet.from_dict(demos))
        devset = ctx.valset or ctx.trainset
        if rows is not None:
            devset = [devset[i] for i in rows]
        max_errors = run.settings.get("max_errors")
        result = Evaluate(
            devset=devset,
            metric=ctx.metric,
            concurrency=concurrency,
            progress=False,
            max_errors=None if max_errors is None else max(0, max_errors - errors_before),
        )(program)
    usage = result.usage
    return {
        "id": candidate_id,
        "score": result.score,
        "n": result.n,
        "errors": result.n_errors,
        "first_error": result.errors[0].error if result.errors else None,
        "lm_calls": usage.calls,
        "cache_hits": usage.cache_hits,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost": usage.cost,
        "row_scores": [0.0 if r.error is not None else float(r.score or 0.0) for r in result.rows],
    }
