"""Evaluation as a task: a program (or a registered model version) scored on a dataset."""

from __future__ import annotations

from typing import Any

from prefect import task

from dspex._redact import redacted_errors
from dspex._settings import context
from dspex.evaluate import Evaluate
from dspex.mlflow import load_model
from dspex.optimize import EvaluateParams
from dspex.optimize._refs import resolve_metric, resolve_program
from dspex.primitives import Module
from dspex.tasks._common import task_options

__all__ = ["evaluate_program"]


def _program(ref: str) -> Module:
    if ref.startswith("models:/"):
        return load_model(ref)
    return resolve_program(ref)


@task(name="evaluate-program", **task_options())
def evaluate_program(params: EvaluateParams, fingerprint: str) -> dict[str, Any]:
    """Score the program on the dataset; the result is persisted and reused on a re-run.
    What it raises leaves with registered secrets scrubbed from its text."""
    with redacted_errors():
        program = _program(params.program)
        overrides: dict[str, Any] = {"labels": {"stage": "evaluate"}}
        if params.lm is not None:
            overrides["lm"] = params.lm.build()
        with context(**overrides):
            result = Evaluate(
                devset=params.dataset.load(),
                metric=resolve_metric(params.metric),
                concurrency=params.concurrency,
                progress=False,
            )(program)
    u = result.usage
    return {
        "score": result.score,
        "n": result.n,
        "errors": result.n_errors,
        "first_errors": [r.error for r in result.errors[:5]],
        "lm_calls": u.calls,
        "cache_hits": u.cache_hits,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "cost": u.cost,
    }
