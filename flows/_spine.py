"""The spine every optimization flow shares: tracking, persistence, the final steps.

``start_run`` opens (or, after a crash, reopens) the MLflow run for these parameters and
points task results at the runs directory; ``tracking()`` records traces and makes the
MLflow run current; ``finish_run`` logs the candidates (one child run each), saves and logs
the winner, registers it (idempotently), and publishes Prefect artifacts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspex._paths import runs_dir
from dspex._redact import redacted_errors
from dspex._settings import context
from dspex.callbacks import track_usage
from dspex.errors import BudgetExceededError
from dspex.flows._locks import file_lock
from dspex.integrations.mlflow._logging import WinnerModel, open_optimization_run
from dspex.integrations.mlflow._tracing import run_traces
from dspex.lm import Budget, ConcurrencyLimit
from dspex.mlflow import configure_tracking
from dspex.optimize import OptimizeParams, RunInputs, program_fingerprint
from dspex.optimize._demos import stable_json
from dspex.optimize._refs import resolve_program
from dspex.primitives import Module
from dspex.tasks._common import TaskRuntime, durable_lm_cache, runtime_for
from dspex.tasks.data import load_dataset
from dspex.tasks.limits import lm_rate_limit
from dspex.tasks.tracking import log_candidates, log_winner, publish_artifacts, register_winner
from dspex.traces import record as record_traces

__all__ = [
    "SpineRun",
    "budget_for",
    "finish_run",
    "gather_results",
    "open_run",
    "run_inputs",
    "skipped_examples",
    "start_run",
]


@dataclass
class SpineRun:
    """One optimization run: its key, directories and MLflow run."""

    params: OptimizeParams
    run_key: str
    runs: Path
    tracking_uri: str
    mlflow_run_id: str
    usage: Any = field(default=None)

    @property
    def runtime(self) -> TaskRuntime:
        """The tasks' ``runtime`` argument: how a task in another process (a Dask worker)
        records its traces into this run and obeys its LM rate limit."""
        return runtime_for(self.mlflow_run_id, self.runs, self.params.lm_rate_limit)

    @contextmanager
    def tracking(self) -> Iterator[None]:
        """Record every LM and module call of the run as trace rows, and count usage; with
        ``dspex.mlflow.autolog()`` on, a sample of the calls also become MLflow traces of
        the run."""
        with (
            record_traces(run_id=self.mlflow_run_id, runs_dir=self.runs),
            track_usage() as usage,
            run_traces(self.mlflow_run_id, self.tracking_uri),
        ):
            self.usage = usage
            yield


def run_key(params: OptimizeParams) -> str:
    """Same parameters (and program) → same key: how a restarted run finds its MLflow run."""
    # Where tasks run is not what the run is: moving it to Dask keeps its MLflow run.
    body = params.model_dump(mode="json", exclude={"task_runner"})
    if not params.program.startswith("registry:"):
        # An import path names code, not content: the program it builds (its prompts, the
        # index its factory opens) is fingerprinted, so a rebuilt index is another run. A
        # registry reference's key already holds the program's fingerprint.
        body["program_fp"] = program_fingerprint(resolve_program(params.program))
    return hashlib.sha256(stable_json(body).encode()).hexdigest()[:16]


def run_inputs(params: OptimizeParams) -> RunInputs:
    """The run as task inputs: references, fingerprints and settings — all values."""
    program = resolve_program(params.program)
    train = load_dataset(params.trainset, "trainset")
    val = load_dataset(params.valset, "valset") if params.valset else None
    return RunInputs(
        optimizer=params.optimizer,
        program=params.program,
        program_fp=program_fingerprint(program),
        metric=params.metric,
        trainset=params.trainset,
        trainset_fp=train["fingerprint"],
        valset=params.valset,
        valset_fp=val["fingerprint"] if val else None,
        lm_ref=params.lm.ref if params.lm else None,
        lm=params.lm if params.lm is not None and not params.lm.ref else None,
        settings=dict(params.settings),
    )


def budget_for(params: OptimizeParams) -> Budget | None:
    b = params.budget
    if b.max_calls is None and b.max_tokens is None and b.max_cost is None:
        return None
    return Budget(max_calls=b.max_calls, max_tokens=b.max_tokens, max_cost=b.max_cost)


def skipped_examples(demosets: Sequence[Mapping[str, Any] | None]) -> int:
    """Examples the bootstraps skipped because the metric raised on them twice."""
    return sum(int(d.get("stats", {}).get("skipped", 0)) for d in demosets if d is not None)


def gather_results(futures: list[Any]) -> tuple[list[Any], bool]:
    """Results of finished futures; ``None`` for those stopped by the budget."""
    results, exhausted = [], False
    for f in futures:
        try:
            results.append(f.result())
        except BudgetExceededError:
            results.append(None)
            exhausted = True
    return results, exhausted


def start_run(params: OptimizeParams) -> SpineRun:
    runs = runs_dir(params.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    if params.tracking.model_name:
        # Registering needs a program another process can rebuild: say so before any LM call.
        from dspex.integrations.mlflow._program import pack_program

        pack_program(resolve_program(params.program))
    key = run_key(params)
    uri = configure_tracking(params.tracking.tracking_uri, runs_dir=runs)
    # Workers started together with the same parameters must find one MLflow run, not make
    # one each: opening is serialized per runs directory.
    with file_lock(runs / ".dspex-open-run.lock"):
        run_id = open_optimization_run(uri, params, key, runs)
    return SpineRun(params=params, run_key=key, runs=runs, tracking_uri=uri, mlflow_run_id=run_id)


@contextmanager
def open_run(params: OptimizeParams) -> Iterator[tuple[SpineRun, Budget | None]]:
    """Start (or reopen) the run, then enter what every optimization flow runs inside: the
    LM rate limit, the durable LM cache, the run's budget and LM concurrency limit, and the
    recording of traces and usage. Whatever the flow raises leaves with registered secrets
    scrubbed from its text: Prefect writes it to the flow run's state message and logs."""
    with redacted_errors():
        spine = start_run(params)
        budget = budget_for(params)
        with (
            lm_rate_limit(params),
            durable_lm_cache(),
            context(budget=budget, lm_limit=ConcurrencyLimit(params.concurrency)),
            spine.tracking(),
        ):
            yield spine, budget


def finish_run(
    spine: SpineRun,
    winner: Module,
    rows: Sequence[dict[str, Any]],
    best_id: str,
    budget_exhausted: bool,
    budget: Budget | None,
    skipped: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Log, save, register and summarize; returns the flow's JSON result.

    ``skipped`` counts, per step, the items left out after a failed retry (``bootstrap``:
    examples whose metric raised twice; MIPROv2's ``summarizer`` and ``proposer``: answers
    that did not parse twice); each is a ``skipped.<step>`` MLflow metric and a line of the
    Prefect summary."""
    skipped = dict(skipped or {})
    best = next(r for r in rows if r["id"] == best_id)
    path = spine.runs / "programs" / f"{spine.mlflow_run_id}.json"
    winner.save(path)
    usage: dict[str, Any] = {}
    if spine.usage is not None:
        usage = spine.usage.total.to_dict()
        usage["by_stage"] = {
            stage: {
                "calls": u.calls,
                "cache_hits": u.cache_hits,
                "tokens": u.total_tokens,
                **({"cost": u.cost} if u.cost is not None else {}),
            }
            for stage, u in spine.usage.by_stage.items()
        }
    uri, run_id = spine.tracking_uri, spine.mlflow_run_id
    log_candidates(uri, run_id, rows)
    log_winner(uri, run_id, WinnerModel.pack(winner), best, path, budget_exhausted, usage, skipped)
    version = None
    if spine.params.tracking.model_name:
        version = register_winner(
            uri, run_id, spine.params.tracking.model_name, spine.params.tracking.alias
        )
    publish_artifacts(rows, best_id, spine.params, budget_exhausted, version, skipped)
    return {
        "program_state": json.loads(path.read_text()),
        "score": best.get("score"),
        "candidates": list(rows),
        "mlflow_run_id": spine.mlflow_run_id,
        "model_version": version,
        "budget_exhausted": budget_exhausted,
        "lm_usage": {**usage, **({"budget_spent": budget.spent} if budget else {})},
    }
