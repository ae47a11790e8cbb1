"""The MIPROv2 flow: bootstrap demo sets → propose instructions → Bayesian search → select.

The search is an Optuna study (TPE, seeded) stored in SQLite under the runs directory, or any
RDB URL by configuration (``settings.optuna_storage``). Trials are reserved in batches of
slots (see ``flows/_study.py``), evaluated concurrently as Prefect tasks on seeded
minibatches, and told together. Each slot's sampler seed and minibatch come from its logical
index, so a killed run — whose orphaned trials are failed on resume — continues with the same
trials and ends with the same winner as an uninterrupted one, and several workers running the
same parameters share one study without losing or duplicating a trial.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from dspex.errors import BudgetExceededError
from dspex.flows._spine import (
    finish_run,
    gather_results,
    open_run,
    run_inputs,
    warm_up,
)
from dspex.flows._study import finished, open_study, reserve
from dspex.optimize import DemoSet, OptimizeParams, candidate_specs
from dspex.optimize._mipro import MiproPlan, apply_config, config_key, minibatch_indices, plan
from dspex.optimize._refs import resolve_program
from dspex.tasks.fewshot import bootstrap_candidate
from dspex.tasks.mipro import evaluate_config, propose
from dspex.tasks.tracking import log_candidates, log_plots

__all__ = ["mipro", "warm_up"]


def _best_unseen(study: Any, below: int, seen: set[str]) -> dict[str, int] | None:
    """Among trials with index < ``below``, the configuration with the best minibatch mean
    that is not in ``seen``."""
    by_config: dict[str, list[float]] = {}
    params: dict[str, dict[str, int]] = {}
    for index, t in finished(study).items():
        if index >= below or t.value is None:
            continue
        key = config_key(t.params)
        by_config.setdefault(key, []).append(t.value)
        params[key] = {k: int(v) for k, v in t.params.items()}
    ranked = sorted(by_config, key=lambda k: (-sum(by_config[k]) / len(by_config[k]), k))
    return next((params[k] for k in ranked if k not in seen), None)


def _prefix_done(study: Any) -> int:
    """How many trials, from index 0 on, have finished without a gap."""
    done = finished(study)
    n = 0
    while n in done:
        n += 1
    return n


def _checkpoints(
    study: Any, p: MiproPlan, ctx: dict[str, Any], pending: dict[int, tuple[str, Any]]
) -> None:
    """Start the full evaluations due: at every ``minibatch_full_eval_steps`` trials and at
    the end. They run while later trials do (``pending``, checkpoint → (config, future)).

    Checkpoint ``c`` looks only at trials with index < c and at the configurations chosen at
    earlier checkpoints, so a resumed run makes the same choices.
    """
    steps = max(1, p.minibatch_full_eval_steps)
    points = [*range(steps, p.num_trials, steps), p.num_trials]
    seen = {config_key(ctx["default"])}
    done = _prefix_done(study)
    for c in points:
        attrs = study.user_attrs
        if f"checkpoint:{c}" in attrs:
            seen.add(attrs[f"checkpoint:{c}"])
            continue
        if c in pending:
            seen.add(pending[c][0])
            continue
        if c > done:
            return
        config = _best_unseen(study, c, seen)
        if config is None:
            study.set_user_attr(f"checkpoint:{c}", "")
            continue
        key = config_key(config)
        pending[c] = (key, ctx["submit"]("full", config, ctx["rows"], full=True))
        seen.add(key)
        if c == p.num_trials and "trials_done" in ctx:
            ctx["trials_done"]()  # runs while the last full evaluation waits on the LM


def _harvest(study: Any, pending: dict[int, tuple[str, Any]], wait: bool) -> bool:
    """Record finished full evaluations (all of them when ``wait``); True if the budget
    stopped one. A checkpoint counts as reached only once its score is stored."""
    exhausted = False
    for c, (key, future) in sorted(pending.items()):
        if not wait and not future.state.is_final():
            continue
        (result,), stopped = gather_results([future])
        del pending[c]
        if stopped:
            exhausted = True
            continue  # left unreached: a resumed run evaluates it again
        study.set_user_attr("full:" + key, result["score"])
        if c:
            study.set_user_attr(f"checkpoint:{c}", key)
    return exhausted


def _search(
    study: Any, p: MiproPlan, ctx: dict[str, Any], baseline: Any = None
) -> tuple[dict[str, float | None], bool]:
    """Run trials until the plan's count is reached; returns full-evaluation scores.

    ``baseline`` is the running full evaluation of the program as given, if any.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution

    dists = {
        f"{name}.{kind}": CategoricalDistribution(list(range(size)))
        for name, sizes in ctx["sizes"].items()
        for kind, size in sizes.items()
    }
    exhausted = False
    warming = threading.Thread(target=_warm_imports, name="dspex-warm-imports", daemon=True)
    pending: dict[int, tuple[str, Any]] = {}
    if baseline is not None:  # checkpoint 0: nothing to choose, only a score to store
        pending[0] = (config_key(ctx["default"]), baseline)
    try:
        _checkpoints(study, p, ctx, pending)  # those a killed run had not reached yet
        while len(finished(study)) < p.num_trials and not exhausted:
            trials = reserve(study, ctx["storage"], p.trial_batch_size, p.num_trials, p.seed, dists)
            if not trials:  # every slot is taken: other workers are finishing theirs
                exhausted = _harvest(study, pending, wait=False)
                time.sleep(0.5)
                continue
            futures = []
            for trial in trials:
                index = trial.user_attrs["index"]
                rows = minibatch_indices(len(ctx["rows"]), p.minibatch_size, p.seed, index)
                futures.append(
                    ctx["submit"](f"trial-{index}", trial.params, [ctx["rows"][r] for r in rows])
                )
            if not warming.is_alive() and warming.ident is None:
                warming.start()  # while the first trials wait on the LM
            results, exhausted = gather_results(futures)
            for trial, r in zip(trials, results, strict=True):
                if r is None:
                    continue  # stopped by the budget: left running, failed on resume
                if r["score"] is None:
                    trial.set_user_attr("error", r["error"])
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, r["score"])
            exhausted = _harvest(study, pending, wait=False) or exhausted
            if not exhausted:
                _checkpoints(study, p, ctx, pending)
        if not exhausted:
            _checkpoints(study, p, ctx, pending)  # the last one, if another worker told it
    except BudgetExceededError:
        exhausted = True
    finally:
        exhausted = _harvest(study, pending, wait=True) or exhausted
    full = {
        k.removeprefix("full:"): v for k, v in study.user_attrs.items() if k.startswith("full:")
    }
    return full, exhausted


@flow(
    name="dspex-miprov2",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
    persist_result=False,
)
def mipro(params: OptimizeParams) -> dict[str, Any]:
    """MIPROv2 as a durable DAG; returns the run's summary."""
    with open_run(params) as (spine, budget):
        run = run_inputs(params)
        program = resolve_program(params.program)
        names = [n for n, _ in program.named_predictors()]
        n_val = len(params.valset.load()) if params.valset else len(params.trainset.load())
        p = plan(params.settings, len(names), n_val)
        settings = {**params.settings, "num_candidate_programs": max(0, p.num_candidates - 3)}
        specs = candidate_specs("BootstrapFewShotWithRandomSearch", settings)[: p.num_candidates]

        def submit(
            label: str,
            config: dict[str, int],
            rs: list[int],
            full: bool = False,
            instructions: dict[str, list[str]] | None = None,
            demosets: list[dict[str, Any]] | None = None,
        ) -> Any:
            return evaluate_config.submit(
                run,
                f"{label}-{config_key(config)}" if full else label,
                config,
                instructions if instructions is not None else proposal["instructions"],
                demosets if demosets is not None else built_sets,
                rs,
                params.concurrency,
                spine.runtime,
            )

        rows = list(range(n_val))
        if p.val_size is not None and n_val > p.val_size:
            rows = sorted(random.Random(p.seed).sample(rows, p.val_size))
        storage = params.settings.get("optuna_storage") or _sqlite(spine.runs, spine.run_key)
        study = open_study(storage, f"dspex-{spine.run_key}", p.seed)
        default = {f"{n}.{k}": 0 for n in names for k in ("instruction", "demos")}
        baseline = None  # the program as given (its instructions, no demos), while bootstrapping
        if "full:" + config_key(default) not in study.user_attrs:
            original = {n: [pr.signature.instructions] for n, pr in program.named_predictors()}
            baseline = submit(
                "default",
                default,
                rows,
                True,
                instructions=original,
                demosets=[DemoSet().to_dict()],
            )
        built, exhausted = gather_results(
            [bootstrap_candidate.submit(run, s, params.concurrency, spine.runtime) for s in specs]
        )
        built_sets = [d if d is not None else DemoSet().to_dict() for d in built]
        proposal = propose(run, built_sets, p.num_candidates, p.seed, spine.runtime)
        instructions, demosets = proposal["instructions"], built_sets
        sizes = {n: {"instruction": len(instructions[n]), "demos": len(demosets)} for n in names}
        logging: list[Any] = []

        def trials_done() -> None:
            """Log the trials (child runs) and the study's plots while the last full
            evaluation runs; finish_run then logs only the full evaluations."""
            if _claim_finish(study, storage):
                uri, run_id = spine.tracking_uri, spine.mlflow_run_id
                logging.append(log_candidates.submit(uri, run_id, _rows(study, {})))
                out = spine.runs / "plots" / run_id
                logging.append(log_plots.submit(uri, run_id, storage, study.study_name, out))

        ctx = {
            "sizes": sizes,
            "default": default,
            "rows": rows,
            "submit": submit,
            "storage": storage,
            "trials_done": trials_done,
        }
        full, more = _search(study, p, ctx, baseline)
        for future in logging:
            future.result()  # a logging failure fails the run, as it would in finish_run
        exhausted = exhausted or more
        candidates = _rows(study, full)
        scored = {k: v for k, v in full.items() if v is not None}
        best_key = (
            max(scored, key=lambda k: (scored[k], k == config_key(default)))
            if scored
            else config_key(default)
        )
        best_config = {k: int(v) for k, v in (x.split("=") for x in best_key.split(","))}
        winner = apply_config(
            program, best_config, instructions, [DemoSet.from_dict(d) for d in demosets]
        )
        if params.lm is not None:  # the registered program must know which LM it was tuned on
            winner.set_lm(params.lm.build(), only_unset=True)
        if not _claim_finish(study, storage):  # another live worker logs and registers
            return {
                "program_state": winner.dump_state(),
                "score": full.get(best_key),
                "candidates": candidates,
                "mlflow_run_id": spine.mlflow_run_id,
                "model_version": None,
                "budget_exhausted": exhausted,
                "lm_usage": {},
            }
        return finish_run(spine, winner, candidates, f"full:{best_key}", exhausted, budget)


def _warm_imports() -> None:
    """Import what the plots need (matplotlib; optuna.importance imports scikit-learn): ~1.5 s
    of CPU that would otherwise delay the end of the run."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna.importance  # noqa: F401
    from optuna.visualization import matplotlib as _  # noqa: F401


def _claim_finish(study: Any, storage: str) -> bool:
    """Whether this worker logs, saves and registers the result (exactly one worker does)."""
    from dspex.flows._study import WORKER, alive, lock

    with lock(storage):
        owner = study.user_attrs.get("finished_by")
        if owner is not None and owner != WORKER and alive(str(owner)):
            return False
        study.set_user_attr("finished_by", WORKER)
        return True


def _sqlite(runs: Path, key: str) -> str:
    (runs / "optuna").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / 'optuna' / f'{key}.db'}"


def _rows(study: Any, full: dict[str, float | None]) -> list[dict[str, Any]]:
    """The candidate table: every trial (minibatch) and every full evaluation."""
    rows: list[dict[str, Any]] = []
    for index, t in sorted(finished(study).items()):
        rows.append(
            {
                "id": f"trial-{index}",
                "kind": "minibatch",
                "score": t.value,
                "config": config_key(t.params),
                "error": t.user_attrs.get("error"),
            }
        )
    for key, score in full.items():
        rows.append({"id": f"full:{key}", "kind": "full", "score": score, "config": key})
    return rows
