"""The MIPROv2 flow: bootstrap demo sets → propose instructions → Bayesian search → select.

The search is an Optuna study (TPE, seeded) stored in SQLite under the runs directory, or any
RDB URL by configuration (``settings.optuna_storage``). Trials are reserved in batches of
slots (see ``flows/_study.py``), evaluated concurrently as Prefect tasks on seeded
minibatches, and told as they finish; a batch's parameters come from the batches before it.
Each slot's sampler seed and minibatch come from its logical index, so a killed run — whose
orphaned trials are failed on resume — continues with the same trials and ends with the same
winner as an uninterrupted one, and several workers running the same parameters share one
study without losing or duplicating a trial.

When to run a full evaluation, of which configuration, and which one wins is the search
policy of :mod:`dspex.optimize._mipro_search`; this module runs it as tasks. Every LM call
waits for one of the run's ``concurrency`` slots, those of the critical path (bootstrap,
proposals, trials) first: full evaluations, which nothing waits for until the end, take the
slots it leaves idle (the run's :class:`~dspex.lm.ConcurrencyLimit` and its ``background``
view).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect import flow
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from dspex.errors import BudgetExceededError
from dspex.flows._spine import (
    SpineRun,
    finish_run,
    gather_results,
    open_run,
    run_inputs,
    skipped_examples,
)
from dspex.flows._study import Planned, SharedStudy, sqlite_storage
from dspex.integrations.mlflow._tracking import warm_model_logging
from dspex.optimize import DemoSet, OptimizeParams, RunInputs, candidate_specs
from dspex.optimize._mipro import MiproPlan, apply_config, config_key, plan
from dspex.optimize._mipro_search import (
    TrialOutcome,
    best_configuration,
    candidate_rows,
    checkpoints,
    default_config,
    due_full_evaluations,
    finished_prefix,
    parse_config_key,
    reusable_trial,
    search_space,
    trial_rows,
    validation_rows,
)
from dspex.optimize._refs import resolve_program
from dspex.tasks.fewshot import bootstrap_candidate
from dspex.tasks.mipro import describe, evaluate_config, propose
from dspex.tasks.tracking import log_candidates, log_plots

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import Trial
    from prefect.futures import PrefectFuture

    from dspex.lm import Budget
    from dspex.primitives import Module

__all__ = ["mipro"]


@flow(
    name="dspex-miprov2",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
    persist_result=False,
)
def mipro(params: OptimizeParams) -> dict[str, Any]:
    """MIPROv2 as a durable DAG; returns the run's summary."""
    with open_run(params) as (spine, budget):
        setup = _prepare(params, spine)
        # All three run at once: the bootstraps and the grounding lead to the proposals,
        # while the baseline's score is needed only at the first checkpoint.
        building = _start_bootstrap(setup)
        described = describe.submit(setup.run, setup.plan.seed, setup.spine.runtime)
        baseline = _start_baseline(setup)
        demosets, exhausted = _demosets(building)
        _raise_if_failed(baseline)  # a metric or program bug: every trial would fail alike
        instructions, skipped = _propose(setup, demosets, described.result())
        search = _Search(setup, instructions, demosets)
        full, stopped = search.run(baseline)
        skipped = {"bootstrap": skipped_examples(demosets), **skipped}
        return _finish(setup, search, full, exhausted or stopped, budget, skipped)


@dataclass(frozen=True)
class _Setup:
    """What every phase of one run works from."""

    params: OptimizeParams
    spine: SpineRun
    run: RunInputs
    program: Module
    plan: MiproPlan
    rows: list[int]  # the validation rows the search scores on
    default: dict[str, int]  # the program as given
    study: SharedStudy


def _prepare(params: OptimizeParams, spine: SpineRun) -> _Setup:
    """Resolve the plan, the validation rows and the study (created, or found again)."""
    run = run_inputs(params)
    program = resolve_program(params.program)
    names = [n for n, _ in program.named_predictors()]
    n_val = len(params.valset.load()) if params.valset else len(params.trainset.load())
    p = plan(params.settings, len(names), n_val)
    storage = params.settings.get("optuna_storage") or sqlite_storage(spine.runs, spine.run_key)
    return _Setup(
        params=params,
        spine=spine,
        run=run,
        program=program,
        plan=p,
        rows=validation_rows(n_val, p),
        default=default_config(names),
        study=SharedStudy(storage, f"dspex-{spine.run_key}", p.seed),
    )


def _evaluate(
    setup: _Setup,
    label: str,
    config: dict[str, int],
    rows: list[int],
    instructions: dict[str, list[str]],
    demosets: list[dict[str, Any]],
) -> PrefectFuture[dict[str, Any]]:
    """Submit the evaluation of one configuration on ``rows``."""
    return evaluate_config.submit(
        setup.run,
        label,
        config,
        instructions,
        demosets,
        rows,
        setup.params.concurrency,
        setup.spine.runtime,
    )


def _start_baseline(setup: _Setup) -> PrefectFuture[dict[str, Any]] | None:
    """The full evaluation of the program as given (its instructions, no demos): checkpoint
    0. ``None`` when a resumed run has its score already."""
    key = config_key(setup.default)
    if key in setup.study.full_scores():
        return None
    original = {n: [pr.signature.instructions] for n, pr in setup.program.named_predictors()}
    empty = [DemoSet().to_dict()]
    return _evaluate(setup, f"default-{key}", setup.default, setup.rows, original, empty)


def _raise_if_failed(future: PrefectFuture[Any] | None) -> None:
    """Raise what an evaluation that has already failed raised (without waiting for it)."""
    if future is not None and future.state.is_failed():
        future.result()


def _start_bootstrap(setup: _Setup) -> list[PrefectFuture[dict[str, Any]]]:
    """Submit one demo-set build per candidate."""
    p, params = setup.plan, setup.params
    settings = {**params.settings, "num_candidate_programs": max(0, p.num_candidates - 3)}
    specs = candidate_specs("BootstrapFewShotWithRandomSearch", settings)[: p.num_candidates]
    return [
        bootstrap_candidate.submit(setup.run, s, params.concurrency, setup.spine.runtime)
        for s in specs
    ]


def _demosets(
    building: list[PrefectFuture[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], bool]:
    """One demo set per candidate (empty where the budget stopped its bootstrap)."""
    built, exhausted = gather_results(building)
    return [d if d is not None else DemoSet().to_dict() for d in built], exhausted


def _propose(
    setup: _Setup, demosets: list[dict[str, Any]], described: dict[str, Any]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Per predictor: its original instruction, then the grounded proposals; and what was
    skipped because the prompt model's answer did not parse (summarizer, proposer)."""
    p = setup.plan
    proposal = propose(
        setup.run, demosets, described, p.num_candidates, p.seed, setup.spine.runtime
    )
    instructions: dict[str, list[str]] = proposal["instructions"]
    return instructions, dict(proposal["skipped"])


def _finish(
    setup: _Setup,
    search: _Search,
    full: dict[str, float | None],
    exhausted: bool,
    budget: Budget | None,
    skipped: dict[str, int],
) -> dict[str, Any]:
    """Build the winner, then log, save and register it — unless another live worker of
    the same run does: this one then returns its own view of the result."""
    candidates = candidate_rows(setup.study.outcomes(), full)
    best_key = best_configuration(full, setup.default)
    demosets = [DemoSet.from_dict(d) for d in search.demosets]
    winner = apply_config(setup.program, parse_config_key(best_key), search.instructions, demosets)
    if setup.params.lm is not None:  # the registered program must know which LM it was tuned on
        winner.set_lm(setup.params.lm.build(), only_unset=True)
    if not setup.study.claim_finish():
        return {
            "program_state": winner.dump_state(),
            "score": full.get(best_key),
            "candidates": candidates,
            "mlflow_run_id": setup.spine.mlflow_run_id,
            "model_version": None,
            "budget_exhausted": exhausted,
            "lm_usage": {},
        }
    best_id = f"full:{best_key}"
    return finish_run(setup.spine, winner, candidates, best_id, exhausted, budget, skipped)


@dataclass
class _Search:
    """The Bayesian search: minibatch trials reserved in batches from the shared study, and
    the full evaluations the policy makes due, which run while later trials do."""

    setup: _Setup
    instructions: dict[str, list[str]]
    demosets: list[dict[str, Any]]
    # checkpoint → (configuration key, its running full evaluation)
    pending: dict[int, tuple[str, PrefectFuture[dict[str, Any]]]] = field(default_factory=dict)
    logging: list[PrefectFuture[Any]] = field(default_factory=list)
    logged: int = 0  # trials 0..logged-1 are logged (or being logged) as child runs
    rows_logging: PrefectFuture[Any] | None = None  # the latest of those logging tasks
    plotted: bool = False  # the study's plots are logged (or being logged)
    finisher: bool = False  # this worker logs, saves and registers the result
    stopped: bool = False  # the budget stopped a full evaluation harvested early
    warming: threading.Thread = field(
        default_factory=lambda: threading.Thread(
            target=_warm_imports, name="dspex-warm-imports", daemon=True
        )
    )

    def run(
        self, baseline: PrefectFuture[dict[str, Any]] | None
    ) -> tuple[dict[str, float | None], bool]:
        """Run trials until the plan's count is reached; returns the full-evaluation scores
        and whether the budget stopped the search."""
        study, p = self.setup.study, self.setup.plan
        if baseline is not None:  # checkpoint 0: nothing to choose, only a score to store
            self.pending[0] = (config_key(self.setup.default), baseline)
        _raise_if_failed(baseline)
        space = self._space()
        exhausted = False
        try:
            # Checkpoints a killed run had not reached are started with the first batch.
            while not exhausted and len(study.finished()) < p.num_trials:
                exhausted = self._run_batch(space)
            if not exhausted:
                self._start_due()  # the last one, if another worker told it
        except BudgetExceededError:
            exhausted = True
        finally:
            exhausted = self._harvest(wait=True) or exhausted or self.stopped
        for future in self.logging:
            future.result()  # a logging failure fails the run, as it would in finish_run
        return study.full_scores(), exhausted

    def _space(self) -> dict[str, BaseDistribution]:
        from optuna.distributions import CategoricalDistribution

        names = [n for n, _ in self.setup.program.named_predictors()]
        sizes = search_space(names, self.instructions, len(self.demosets))
        return {k: CategoricalDistribution(list(range(n))) for k, n in sizes.items()}

    def _submit(
        self, label: str, config: dict[str, int], rows: list[int]
    ) -> PrefectFuture[dict[str, Any]]:
        return _evaluate(self.setup, label, config, rows, self.instructions, self.demosets)

    def _run_batch(self, space: dict[str, BaseDistribution]) -> bool:
        """Reserve, evaluate and tell one batch of trials; True if the budget ran out."""
        study, p = self.setup.study, self.setup.plan
        trials, jobs = study.reserve_and_start(
            p.trial_batch_size, p.num_trials, p.seed, space, self._start_trials
        )
        if not trials:  # every slot is taken: other workers are finishing theirs
            exhausted = self._harvest(wait=False)
            if not exhausted:
                self._start_due()
            time.sleep(0.5)
            return exhausted
        if self.warming.ident is None:
            self.warming.start()  # while the first trials wait on the LM
        # Those a killed run had not reached; the trials told so far are logged while the
        # batch runs.
        self._log_trials(self._start_due())
        exhausted = self._tell_as_done(trials, jobs)
        return self._harvest(wait=False) or exhausted

    def _tell_as_done(
        self, trials: list[Trial], jobs: list[PrefectFuture[dict[str, Any]] | dict[str, Any]]
    ) -> bool:
        """Tell each trial as its evaluation finishes; True if the budget stopped one. A
        full evaluation due once a told trial completes its checkpoint's trials starts
        right then: its calls, served after the trials' (the limit's background view), fill
        the slots the batch's last calls and the next batch's reservation leave idle."""
        study = self.setup.study
        index = {id(t): int(t.user_attrs["index"]) for t in trials}
        lo, hi = min(index.values()), max(index.values())
        ahead = [c for c in checkpoints(self.setup.plan) if lo < c <= hi + 1]
        waiting: dict[int, tuple[Trial, PrefectFuture[dict[str, Any]]]] = {}
        for trial, job in zip(trials, jobs, strict=True):
            if isinstance(job, dict):
                study.tell(trial, job)  # a reused score: no evaluation to wait for
            else:
                waiting[id(job)] = (trial, job)
        exhausted = False
        for future in as_completed([job for _, job in waiting.values()]):
            trial, _ = waiting.pop(id(future))
            (result,), stopped = gather_results([future])
            exhausted = exhausted or stopped
            study.tell(trial, result)
            untold = [index[id(t)] for t, _ in waiting.values()]
            reached = [c for c in ahead if all(i >= c for i in untold)]
            if reached and not exhausted:
                ahead = [c for c in ahead if c not in reached]
                self._start_due()
        return exhausted

    def _start_trials(
        self, planned: list[Planned], outcomes: dict[int, TrialOutcome]
    ) -> list[PrefectFuture[dict[str, Any]] | dict[str, Any]]:
        """Submit the evaluation of each planned trial; a configuration an earlier trial
        evaluated already gets its score instead, with no LM call."""
        rows, p = self.setup.rows, self.setup.plan
        jobs: list[PrefectFuture[dict[str, Any]] | dict[str, Any]] = []
        for index, params in planned:
            config = {k: int(v) for k, v in params.items()}
            earlier = reusable_trial(outcomes, index, config)
            if earlier is not None:
                jobs.append({"score": earlier.score, "error": None, "reused_from": earlier.index})
            else:
                jobs.append(self._submit(f"trial-{index}", config, trial_rows(rows, p, index)))
        return jobs

    def _start_due(self) -> dict[int, TrialOutcome]:
        """Start the full evaluations the policy makes due now; returns the finished trials
        it decided on. The last one is chosen once every earlier full score is in (they are
        waited for), so that one that cannot win is not run."""
        study, p = self.setup.study, self.setup.plan
        outcomes = study.outcomes()
        reached = study.reached_checkpoints()
        if p.num_trials not in reached and finished_prefix(outcomes.keys()) >= p.num_trials:
            # Every trial is in: logged, and plotted, while full evaluations still run.
            self._log_trials(outcomes, final=True)
            self.stopped = self._harvest(wait=True) or self.stopped
            reached = study.reached_checkpoints()
        started = {c: key for c, (key, _) in self.pending.items()}
        due = due_full_evaluations(
            p,
            outcomes,
            reached,
            started,
            self.setup.default,
            study.full_scores(),
            len(self.setup.rows),
        )
        for evaluation in due:
            if evaluation.config is None:  # nothing new, or nothing that can win: reached
                study.record_checkpoint(evaluation.checkpoint, "")
            else:
                key = config_key(evaluation.config)
                future = self._submit(f"full-{key}", evaluation.config, self.setup.rows)
                self.pending[evaluation.checkpoint] = (key, future)
            if evaluation.checkpoint == p.num_trials:
                self._log_trials(outcomes, final=True)  # while the last full evaluation runs
        return outcomes

    def _harvest(self, wait: bool) -> bool:
        """Store the scores of finished full evaluations (all of them when ``wait``); True
        if the budget stopped one. Its checkpoint stays unreached: a resumed run evaluates
        it again."""
        exhausted = False
        for checkpoint, (key, future) in sorted(self.pending.items(), key=lambda kv: kv[0]):
            if not wait and not future.state.is_final():
                continue
            (result,), stopped = gather_results([future])
            del self.pending[checkpoint]
            if stopped:
                exhausted = True
            else:
                self.setup.study.record_full(checkpoint, key, result["score"])
        return exhausted

    def _log_trials(self, outcomes: dict[int, TrialOutcome], final: bool = False) -> None:
        """Log the finished trials as child runs while later LM calls run: the unbroken
        prefix 0..n-1 of them, in index order, each logging task after the one before (the
        rows already logged are skipped); with the ``final`` call, once every trial is in,
        the study's plots too. finish_run then logs only the full evaluations. Only the
        worker that logs the result logs them."""
        n = finished_prefix(outcomes.keys())
        if n <= self.logged and (not final or self.plotted):
            return
        study, spine = self.setup.study, self.setup.spine
        self.finisher = self.finisher or study.claim_finish()
        if not self.finisher:
            return
        uri, run_id = spine.tracking_uri, spine.mlflow_run_id
        if n > self.logged:
            rows = candidate_rows({i: t for i, t in outcomes.items() if i < n}, {})
            after = [self.rows_logging] if self.rows_logging is not None else None
            self.rows_logging = log_candidates.submit(
                uri, run_id, rows, wait_for=after, return_state=False
            )
            self.logging.append(self.rows_logging)
            self.logged = n
        if final and not self.plotted:
            self.plotted = True
            out = spine.runs / "plots" / run_id
            self.logging.append(log_plots.submit(uri, run_id, study.url, study.name, out))


def _warm_imports() -> None:
    """Map the installed packages for the winner's MLflow model during the search: CPU that
    would otherwise delay the end of the run."""
    warm_model_logging()
