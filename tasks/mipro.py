"""MIPROv2 tasks: grounding (summary, description), proposal and config evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from prefect import task

from dspex._settings import context, current
from dspex.evaluate import Evaluate
from dspex.optimize import DemoSet, RunInputs
from dspex.optimize._mipro import apply_config, propose_instructions, summarize_and_describe
from dspex.optimize._refs import resolve
from dspex.tasks._common import TaskRuntime, run_context, task_options

__all__ = ["describe", "evaluate_config", "propose"]


@task(name="summarize-and-describe", **task_options())
def describe(run: RunInputs, seed: int, runtime: TaskRuntime | None = None) -> dict[str, Any]:
    """The dataset summary and the program description (``None`` where the prompt model's
    answer did not parse on either try), asked at once. They need no demo set: the flow
    runs this task while the demo sets are bootstrapped."""
    with run_context(run, runtime, stage="propose") as ctx:
        summary, description = summarize_and_describe(
            ctx.trainset, ctx.program, _prompt_lm(run, ctx.lm), seed=seed
        )
    return {"summary": summary, "description": description}


@task(name="propose-instructions", **task_options())
def propose(
    run: RunInputs,
    demosets: Sequence[Mapping[str, Any]],
    described: Mapping[str, str | None],
    n: int,
    seed: int,
    runtime: TaskRuntime | None = None,
) -> dict[str, Any]:
    """Propose instructions per predictor, grounded in the demo sets and in ``described``
    (what :func:`describe` returned).

    ``skipped`` counts what was left out because the prompt model's answer did not parse on
    either try: the summary (``summarizer``), the description and proposals (``proposer``).
    """
    summary, description = described["summary"], described["description"]
    with run_context(run, runtime, stage="propose") as ctx:
        proposals = propose_instructions(
            ctx.program,
            [DemoSet.from_dict(d) for d in demosets],
            summary if summary is not None else "(not available)",
            description if description is not None else "(not available)",
            n,
            _prompt_lm(run, ctx.lm),
            seed=seed,
        )
    return {
        "summary": summary or "",
        "description": description or "",
        "instructions": proposals.instructions,
        "skipped": {
            "summarizer": int(summary is None),
            "proposer": int(description is None) + proposals.skipped,
        },
    }


def _prompt_lm(run: RunInputs, task_lm: Any) -> Any:
    """The LM that writes the proposals: ``prompt_model``, else the task's LM."""
    ref = run.settings.get("prompt_model")
    return resolve(ref) if ref else task_lm or current().require_lm()


@task(name="evaluate-config", task_run_name="evaluate-{label}", **task_options())
def evaluate_config(
    run: RunInputs,
    label: str,
    config: Mapping[str, int],
    instructions: Mapping[str, Sequence[str]],
    demosets: Sequence[Mapping[str, Any]],
    rows: Sequence[int],
    concurrency: int = 16,
    runtime: TaskRuntime | None = None,
) -> dict[str, Any]:
    """Score one configuration on the given validation rows (a minibatch or all of them).

    Trace rows are labelled ``stage=search`` with the trial number for minibatch trials
    (``trial-7``) and ``stage=full-eval`` for full evaluations.
    """
    trial = label.removeprefix("trial-")
    labels: dict[str, Any] = (
        {"stage": "search", "trial": int(trial)} if trial.isdigit() else {"stage": "full-eval"}
    )
    with run_context(run, runtime, **labels) as ctx, _served_after_trials(trial.isdigit()):
        program = apply_config(
            ctx.program, config, instructions, [DemoSet.from_dict(d) for d in demosets]
        )
        devset = [ctx.valset[i] for i in rows]
        result = Evaluate(
            devset=devset,
            metric=ctx.metric,
            concurrency=concurrency,
            progress=False,
            max_errors=run.settings.get("max_errors"),
        )(program)
    if result.n_errors == result.n:  # nothing was scored: a failed evaluation, not a 0
        return {"score": None, "error": result.errors[0].error, "n": result.n}
    return {
        "score": result.score,
        "error": None,
        "n": result.n,
        "errors": result.n_errors,
        "lm_calls": result.usage.calls,
        "cache_hits": result.usage.cache_hits,
        # [row, score] per example (a failed one scores 0): what bounds a configuration's
        # full score before its full evaluation (dspex.optimize._mipro_search)
        "row_scores": [
            [int(i), 0.0 if r.error is not None else float(r.score or 0.0)]
            for i, r in zip(rows, result.rows, strict=True)
        ],
    }


@contextmanager
def _served_after_trials(trial: bool) -> Iterator[None]:
    """A full evaluation's LM calls wait behind every call of the critical path (the run's
    limit's ``background`` view, :class:`~dspex.lm.ConcurrencyLimit`): nothing
    waits for a full score before the last checkpoint, while each batch of trials waits
    for the one before."""
    limit = current().lm_limit
    if trial or limit is None:
        yield
        return
    with context(lm_limit=limit.background):
        yield
