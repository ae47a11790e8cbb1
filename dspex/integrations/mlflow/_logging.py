"""What an optimization run writes to MLflow: its run, one child run per candidate, the
study's plots, the winner (metrics, program JSON, model) and its registered version.

Everything goes through an ``MlflowClient`` with explicit run ids, never the thread-local
"active run": Prefect runs tasks in worker threads, where ``nested=True`` silently starts
top-level runs. Every step is idempotent, so a resumed run finishes the job without
duplicating child runs or model versions. The arguments are values (URIs, ids, rows,
paths, a packed program), so the Prefect tasks in ``dspex.tasks.tracking`` that wrap these
functions take values too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex._redact import redact, redact_text
from dspex.errors import UserError
from dspex.integrations.mlflow._flavor import log_packed
from dspex.integrations.mlflow._program import PackedProgram, pack_program
from dspex.integrations.mlflow._registry import check_alias_unmanaged, register, set_alias
from dspex.integrations.mlflow._tracking import ensure_experiment, tracking_client

if TYPE_CHECKING:
    from dspex.optimize import OptimizeParams
    from dspex.primitives import Module

__all__ = [
    "CANDIDATE_TAG",
    "RUN_KEY_TAG",
    "WinnerModel",
    "log_candidates",
    "log_study_plots",
    "log_winner",
    "open_optimization_run",
    "register_winner",
]

RUN_KEY_TAG = "dspex.run_key"
CANDIDATE_TAG = "dspex.candidate"
_PARAM_CHARS = 500  # a flattened parameter value is cut here
_CANDIDATE_PARAM_CHARS = 6000  # MLflow's limit for a param value
_TAG_CHARS = 500


@dataclass(frozen=True)
class WinnerModel:
    """The winner as :func:`log_winner` takes it: packed (a value), or why it cannot be.

    Attributes:
        packed: the program's code reference and JSON state, or ``None``.
        not_logged: why there is no model (e.g. its class is defined in a notebook); the
            run then keeps the program JSON only.
    """

    packed: PackedProgram | None
    not_logged: str | None = None

    @classmethod
    def pack(cls, program: Module) -> WinnerModel:
        """Pack ``program`` if another process can rebuild it, else note why not."""
        try:
            return cls(pack_program(program))
        except UserError as e:
            return cls(None, str(e)[:_TAG_CHARS])


def open_optimization_run(
    tracking_uri: str, params: OptimizeParams, run_key: str, runs_dir: Path
) -> str:
    """The MLflow run for these parameters: an unfinished one tagged with ``run_key``
    (tagged ``dspex.resumed``), or a new one with every parameter logged flat (redacted)."""
    client = tracking_client(tracking_uri)
    if params.tracking.model_name and params.tracking.alias:
        # Refuse before any LM call, not after the optimization (register_winner checks too).
        check_alias_unmanaged(params.tracking.model_name, params.tracking.alias)
    experiment_id = ensure_experiment(params.tracking.experiment, runs_dir=runs_dir)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status != 'FINISHED'",
        max_results=1,
    )
    if found:
        resumed: str = found[0].info.run_id
        client.set_tag(resumed, "dspex.resumed", "true")
        return resumed
    run = client.create_run(
        experiment_id,
        run_name=f"{params.optimizer}-{run_key[:8]}",
        tags={
            RUN_KEY_TAG: run_key,
            "dspex.optimizer": params.optimizer,
            "dspex.program": params.program,
        },
    )
    run_id: str = run.info.run_id
    from mlflow.entities import Param, RunTag

    flat: dict[str, str] = {}
    _flatten("", redact(params.model_dump(mode="json")), flat)
    # One write for all of them (a transaction each took ~10-20 ms: the flow's first LM call
    # waits for this); MLflow takes at most 100 parameters per batch.
    items = [Param(k, v) for k, v in flat.items()]
    traces = RunTag("dspex.traces", str(runs_dir / "traces" / f"run_id={run_id}"))
    for start in range(0, max(len(items), 1), 100):
        tags = [traces] if start == 0 else []
        client.log_batch(run_id, params=items[start : start + 100], tags=tags)
    return run_id


def _flatten(prefix: str, value: object, out: dict[str, str]) -> None:
    """``{"a": {"b": 1}}`` as ``{"a.b": "1"}``; ``None`` values are left out."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        out[prefix] = str(value)[:_PARAM_CHARS]


def log_candidates(
    tracking_uri: str, parent_run_id: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """One child run per candidate (explicit parent id), and the scores as the parent's
    ``candidate_score`` metric (step = the row's index). Rows already logged are skipped, so
    it can be called as rows come in (the same rows first) and again by a resumed run."""
    from mlflow.entities import Metric, Param, RunTag

    client = tracking_client(tracking_uri)
    # What ``log_dict`` writes, which MLflow types for a dict only. Rows carry error texts:
    # redacted here too, as traces are, whatever their source did.
    table = redact_text(json.dumps([dict(r) for r in rows], indent=2, default=str))
    client.log_text(parent_run_id, table, "candidates.json")
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    existing = {
        r.data.tags.get(CANDIDATE_TAG)
        for r in client.search_runs(
            [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
        )
    }
    now = int(time.time() * 1000)
    # One write per run (log_batch), not one per value: each is a store transaction.
    new = [(step, row) for step, row in enumerate(rows) if row["id"] not in existing]
    scores = [
        Metric("candidate_score", float(row["score"]), now, step)
        for step, row in new
        if row["score"] is not None
    ]
    if scores:  # before the children: a crash in between repeats a score, never loses one
        client.log_batch(parent_run_id, metrics=scores)
    for step, row in new:
        child = client.create_run(
            experiment_id,
            run_name=f"candidate-{row['id']}",
            tags={"mlflow.parentRunId": parent_run_id, CANDIDATE_TAG: row["id"]},
        )
        child_id = child.info.run_id
        params = [Param("candidate", str(row["id"]))] + [
            Param(key, str(row[key])[:_CANDIDATE_PARAM_CHARS])
            for key in ("demos", "kind", "config")
            if row.get(key) is not None
        ]
        metrics = [
            Metric(metric, float(row[metric]), now, step)
            for metric in ("score", "errors", "lm_calls", "cache_hits")
            if row.get(metric) is not None
        ]
        error = row.get("error")
        tags = [RunTag("dspex.error", redact_text(str(error))[:_TAG_CHARS])] if error else []
        client.log_batch(child_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(child_id, "FINISHED")


def log_study_plots(
    tracking_uri: str, run_id: str, storage: str, study_name: str, out: Path
) -> None:
    """The Optuna study's optimization history and parameter importances, drawn into
    ``out`` and logged as artifacts under ``plots/``: ``optimization_history.svg``,
    ``param_importances.svg`` and the importances' values, ``param_importances.json`` (see
    :mod:`dspex.integrations.mlflow._plots` for the measure). A plot that cannot be drawn
    (e.g. importances of a single trial) is noted as a ``dspex.plot.<name>`` tag instead."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.study import StudyDirection

    from dspex.integrations.mlflow._plots import draw_history, draw_importances, param_importances

    client = tracking_client(tracking_uri)
    study = optuna.load_study(study_name=study_name, storage=storage)
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    done = [(t.number, t.params, float(t.value)) for t in trials if t.value is not None]
    numeric = {
        name
        for t in trials
        for name, dist in t.distributions.items()
        if not isinstance(dist, CategoricalDistribution)
    }
    maximize = study.direction == StudyDirection.MAXIMIZE

    def history(path: Path) -> None:
        draw_history([(number, value) for number, _, value in done], maximize, path)

    def importances(path: Path) -> None:
        values = param_importances([(params, value) for _, params, value in done], numeric)
        (out / "param_importances.json").write_text(json.dumps(values.to_json(), indent=2))
        client.log_artifact(run_id, str(out / "param_importances.json"), "plots")
        draw_importances(values, path)

    for name, draw in (
        ("optimization_history", history),
        ("param_importances", importances),
    ):
        try:
            draw(out / f"{name}.svg")
            client.log_artifact(run_id, str(out / f"{name}.svg"), "plots")
        except Exception as e:  # too few trials for importances, etc.: the run goes on
            client.set_tag(run_id, f"dspex.plot.{name}", redact_text(f"skipped: {e}")[:250])


def log_winner(
    tracking_uri: str,
    run_id: str,
    model: WinnerModel,
    best: Mapping[str, Any],
    program_path: Path,
    budget_exhausted: bool,
    usage: Mapping[str, Any],
    skipped: Mapping[str, int] | None = None,
) -> None:
    """The winner's metrics (score, LM usage, items skipped), tags, program JSON and model;
    then the run is finished.

    Args:
        tracking_uri: the run's tracking backend.
        run_id: the optimization run.
        model: the winner, packed (see :meth:`WinnerModel.pack`).
        best: the winner's candidate row (``id``, ``score``).
        program_path: the winner's ``program.save()`` file.
        budget_exhausted: whether the run stopped at its LM budget.
        usage: the run's LM usage (``calls``, ``cache_hits``, tokens, ``cost``, and
            ``by_stage``: stage -> counts).
        skipped: step -> items the run left out after a failed retry, logged as
            ``skipped.<step>`` metrics.
    """
    from mlflow.entities import Metric, RunTag

    client = tracking_client(tracking_uri)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(k, v, now, 0) for k, v in _winner_metrics(best, usage, skipped or {}).items()
        ],
        tags=[
            RunTag("dspex.best_candidate", str(best["id"])),
            RunTag("dspex.budget_exhausted", str(budget_exhausted).lower()),
        ],
    )
    client.log_artifact(run_id, str(program_path), artifact_path="program_json")
    # MLflow 3 keeps models as logged models, not run artifacts: a resumed run that already
    # logged its model has it among the run's model outputs.
    outputs = getattr(client.get_run(run_id), "outputs", None)
    if not getattr(outputs, "model_outputs", None):
        if model.packed is not None:
            log_packed(model.packed, "program", run_id=run_id)
        else:
            client.set_tag(run_id, "dspex.model_not_logged", model.not_logged or "")
    client.set_terminated(run_id, "FINISHED")


def _winner_metrics(
    best: Mapping[str, Any], usage: Mapping[str, Any], skipped: Mapping[str, int]
) -> dict[str, float]:
    values: dict[str, float] = {f"skipped.{step}": float(n) for step, n in skipped.items()}
    if best.get("score") is not None:
        values["best_score"] = float(best["score"])
    for key in ("calls", "cache_hits", "prompt_tokens", "completion_tokens"):
        if usage.get(key) is not None:
            values[f"lm_{key}"] = float(usage[key])
    for stage, counts in usage.get("by_stage", {}).items():
        for key, value in counts.items():
            values[f"lm_{key}.{stage}"] = float(value)
    if usage.get("cost") is not None:
        values["lm_cost_usd"] = float(usage["cost"])
    return values


def register_winner(tracking_uri: str, run_id: str, model_name: str, alias: str | None) -> str:
    """Register the run's ``program`` model as a version of ``model_name`` (one version per
    run, even when re-run) and point ``alias`` at it; returns the version."""
    tracking_client(tracking_uri)  # the registry helpers use the process's tracking URI
    if alias:
        # compile/`dspex optimize` never move an alias the promotion gate manages.
        check_alias_unmanaged(model_name, alias)
    version = register(run_id, model_name, artifact_path="program")
    if alias:
        set_alias(model_name, alias, version.version)
    return str(version.version)
