"""The few-shot optimization flow: LabeledFewShot, BootstrapFewShot and random search.

DAG: load and fingerprint the datasets → build every candidate's demo set (concurrent
tasks) → evaluate each on the valset (concurrent tasks; random search races them: half the
valset, drop the hopeless, then the rest, see :mod:`dspex.optimize._racing`) → select the
best → log it, save it, register it. Each task's result is persisted as JSON under the
runs directory and keyed by its value inputs, so a killed run started again with the same
parameters reuses every finished task; LM calls inside an unfinished task come back from the
LM cache.
"""

from __future__ import annotations

import threading
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from dspex.flows._spine import (
    finish_run,
    gather_results,
    open_run,
    run_inputs,
    skipped_examples,
)
from dspex.integrations.mlflow._tracking import warm_model_logging
from dspex.optimize import (
    DemoSet,
    OptimizeParams,
    RunInputs,
    apply_demos,
    candidate_specs,
    select_best,
)
from dspex.optimize._racing import race_plan, race_summary, still_racing
from dspex.optimize._refs import resolve_program
from dspex.tasks._common import TaskRuntime
from dspex.tasks.fewshot import bootstrap_candidate, evaluate_candidate

__all__ = [
    "FLOWS",
    "bootstrap_fewshot",
    "labeled_fewshot",
    "optimize",
    "random_search",
]


@flow(
    name="dspex-optimize",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
    persist_result=False,
)
def optimize(params: OptimizeParams) -> dict[str, Any]:
    """Optimize a program's demos with a few-shot optimizer; returns the run's summary."""
    with open_run(params) as (spine, budget):
        run = run_inputs(params)
        specs = candidate_specs(params.optimizer, params.settings)
        runtime = spine.runtime
        builds = [bootstrap_candidate.submit(run, s, params.concurrency, runtime) for s in specs]
        threading.Thread(target=warm_model_logging, daemon=True).start()  # while LM calls wait
        built, exhausted = gather_results(builds)
        ready = [(s, d) for s, d in zip(specs, built, strict=True) if d is not None]
        scored: list[dict[str, Any] | None] = [None] * len(ready)
        if params.valset is not None or len(ready) > 1:
            scored, more = _score(params, run, runtime, ready)
            exhausted = exhausted or more
        rows = [
            {"id": s["id"], "demos": DemoSet.from_dict(d).size, **(r or {"score": None})}
            for (s, d), r in zip(ready, scored, strict=True)
        ]
        if not rows:  # the budget ran out before any candidate: the program as it was
            rows = [{"id": "original", "demos": 0, "score": None}]
            ready = [({"id": "original"}, DemoSet(label="original").to_dict())]
        scores = [(r["id"], r["score"]) for r in rows]
        stop = params.settings.get("stop_at_score")
        scored_any = any(s is not None for _, s in scores)
        best_id = select_best(scores, stop) if scored_any else rows[0]["id"]
        best_demos = next(d for s, d in ready if s["id"] == best_id)
        winner = apply_demos(resolve_program(params.program), DemoSet.from_dict(best_demos))
        if params.lm is not None:  # the registered program must know which LM it was tuned on
            winner.set_lm(params.lm.build(), only_unset=True)
        bootstraps = any(s["kind"] == "bootstrap" for s in specs)
        skipped = {"bootstrap": skipped_examples(built)} if bootstraps else {}
        return finish_run(spine, winner, rows, best_id, exhausted, budget, skipped)


def _score(
    params: OptimizeParams,
    run: RunInputs,
    runtime: TaskRuntime,
    ready: list[tuple[dict[str, Any], dict[str, Any]]],
) -> tuple[list[dict[str, Any] | None], bool]:
    """Each candidate's evaluation (``None``: stopped by the budget), raced when random
    search races (see :mod:`dspex.optimize._racing`), else one full evaluation each."""
    settings = params.settings
    racing = (
        params.optimizer == "BootstrapFewShotWithRandomSearch"
        and settings.get("racing", True)
        and settings.get("stop_at_score") is None  # DSPy's early stop needs every score
    )
    if not racing:
        futures = [
            evaluate_candidate.submit(run, s["id"], d, params.concurrency, runtime)
            for s, d in ready
        ]
        return gather_results(futures)
    n = len(params.valset.load() if params.valset is not None else params.trainset.load())
    race = race_plan(n, len(ready), int(settings.get("seed", 0)))
    parts: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(ready))}
    alive, exhausted = list(range(len(ready))), False
    for rung in range(len(race.rungs)):
        rows = race.rows(rung)
        futures = [
            evaluate_candidate.submit(
                run,
                ready[i][0]["id"],
                ready[i][1],
                params.concurrency,
                runtime,
                rows,
                sum(p["errors"] for p in parts[i]),
            )
            for i in alive
        ]
        results, stopped = gather_results(futures)
        if stopped:  # the budget ran out: what finished no longer compares like with like
            return [None] * len(ready), True
        for i, result in zip(alive, results, strict=True):
            parts[i].append(result)
        if rung < len(race.rungs) - 1:
            scores = {i: [x for p in parts[i] for x in p["row_scores"]] for i in alive}
            alive = still_racing(scores, n, race.delta)
    return [race_summary(parts[i], dropped=i not in alive) for i in parts], exhausted


# One named flow per optimizer (what the Prefect UI lists and deployments point at); they
# share the DAG above.
labeled_fewshot = optimize.with_options(name="dspex-labeled-fewshot")
bootstrap_fewshot = optimize.with_options(name="dspex-bootstrap-fewshot")
random_search = optimize.with_options(name="dspex-bootstrap-random-search")
FLOWS = {
    "LabeledFewShot": labeled_fewshot,
    "BootstrapFewShot": bootstrap_fewshot,
    "BootstrapFewShotWithRandomSearch": random_search,
}
