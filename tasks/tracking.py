"""MLflow and Prefect-artifact tasks of the optimization spine.

The MLflow steps are :mod:`dspex.integrations.mlflow._logging`'s functions as Prefect tasks
(not cached: each is idempotent against MLflow itself, which is what a resumed run needs).
Their inputs are values: a tracking URI, run ids, candidate rows, paths and the winner
packed as a :class:`~dspex.integrations.mlflow._logging.WinnerModel`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dspex.integrations.mlflow import _logging
from dspex.optimize import OptimizeParams

__all__ = ["log_candidates", "log_plots", "log_winner", "publish_artifacts", "register_winner"]

log_candidates = task(name="log-candidates", cache_policy=NO_CACHE)(_logging.log_candidates)
log_plots = task(name="log-plots", cache_policy=NO_CACHE)(_logging.log_study_plots)
log_winner = task(name="log-winner", cache_policy=NO_CACHE)(_logging.log_winner)
register_winner = task(name="register-winner", cache_policy=NO_CACHE)(_logging.register_winner)


def publish_artifacts(
    rows: Sequence[Mapping[str, Any]],
    best_id: str,
    params: OptimizeParams,
    budget_exhausted: bool,
    version: str | None,
    skipped: Mapping[str, int] | None = None,
) -> None:
    """A candidate table and a markdown summary of the winner, shown in the Prefect UI;
    the summary says what the run skipped after a failed retry (``skipped``: step -> n)."""
    table = [
        {k: r.get(k) for k in ("id", "demos", "score", "errors", "lm_calls", "cache_hits")}
        for r in rows
    ]
    create_table_artifact(table=table, key="dspex-candidates", description="Candidates")
    best = next(r for r in rows if r["id"] == best_id)
    note = "\n\n**Stopped early: the LM budget was reached.**" if budget_exhausted else ""
    registered = f"\n\nRegistered as `{params.tracking.model_name}` v{version}." if version else ""
    create_markdown_artifact(
        markdown=(
            f"# {params.optimizer}: best candidate `{best_id}`\n\n"
            f"Score **{best.get('score')}** on the valset, with {best.get('demos', 0)} demos."
            f"{registered}{note}{_skipped_note(skipped or {})}\n\n"
            f"```json\n{json.dumps(table, indent=1)}\n```"
        ),
        key="dspex-winner",
        description="Winner",
    )


_SKIPPED = {
    "bootstrap": "trainset example(s) whose metric raised twice",
    "summarizer": "dataset summary whose answer did not parse twice",
    "proposer": "program description or instruction proposal(s) whose answer did not parse twice",
}


def _skipped_note(skipped: Mapping[str, int]) -> str:
    """The summary's account of skipped items, one line per step (``skipped.<step>``)."""
    if not skipped:
        return ""
    lines = [f"- `skipped.{step}` = {n}: {_SKIPPED.get(step, step)}" for step, n in skipped.items()]
    return "\n\n**Skipped after one retry** (the run went on without them):\n" + "\n".join(lines)
