"""The few-shot optimization flow: LabeledFewShot, BootstrapFewShot and random search.

DAG: load and fingerprint the datasets → build every candidate's demo set (concurrent
tasks) → evaluate each on the valset (concurrent tasks) → select the best → log it, save
it, register it. Each task's result is persisted as JSON under the runs directory and keyed
by its value inputs, so a killed run started again with the same parameters reuses every
finished task; LM calls inside an unfinished task come back from the LM cache.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from dspex.flows._spine import (
    finish_run,
    gather_results,
    open_run,
    run_inputs,
    skipped_examples,
    warm_up,
)
from dspex.optimize import (
    DemoSet,
    OptimizeParams,
    apply_demos,
    candidate_specs,
    select_best,
)
from dspex.optimize._refs import resolve_program
from dspex.tasks.fewshot import bootstrap_candidate, evaluate_candidate

__all__ = [
    "FLOWS",
    "bootstrap_fewshot",
    "labeled_fewshot",
    "optimize",
    "random_search",
    "warm_up",
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
        build, evaluate = bootstrap_candidate, evaluate_candidate
        runtime = spine.runtime
        built, exhausted = gather_results(
            [build.submit(run, s, params.concurrency, runtime) for s in specs]
        )
        ready = [(s, d) for s, d in zip(specs, built, strict=True) if d is not None]
        scored: list[dict[str, Any] | None] = [None] * len(ready)
        if params.valset is not None or len(ready) > 1:
            futures = [
                evaluate.submit(run, s["id"], d, params.concurrency, runtime) for s, d in ready
            ]
            scored, more = gather_results(futures)
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
