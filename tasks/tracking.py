"""MLflow and Prefect-artifact tasks of the optimization spine.

Everything here goes through ``MlflowClient`` with explicit run ids (never the thread-local
"active run"), because Prefect runs tasks in worker threads where ``nested=True`` silently
starts top-level runs. Every step is idempotent, so a resumed run finishes the job without
duplicating child runs or model versions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

import dspex
from dspex._redact import redact
from dspex.errors import UserError
from dspex.optimize import EvaluateParams, OptimizeParams

__all__ = [
    "log_candidates",
    "log_plots",
    "log_winner",
    "open_mlflow_run",
    "publish_artifacts",
    "register_winner",
    "tracking_uri_for",
]

RUN_KEY_TAG = "dspex.run_key"
CANDIDATE_TAG = "dspex.candidate"


def tracking_uri_for(params: OptimizeParams | EvaluateParams, runs: Path) -> str:
    """The run's tracking URI: the configured one, else SQLite under its runs directory."""
    from dspex.integrations.mlflow import configure_tracking

    return configure_tracking(params.tracking.tracking_uri, runs_dir=runs)


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    from dspex.integrations.mlflow import configure_tracking

    # Also the fluent API's URI (log_model, the registry) for this process.
    return MlflowClient(tracking_uri=configure_tracking(tracking_uri))


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        out[prefix] = str(value)[:500]


def open_mlflow_run(params: OptimizeParams, run_key: str, runs: Path, tracking_uri: str) -> str:
    """The MLflow run for these parameters: an unfinished one with the same key, or new."""
    from dspex.integrations.mlflow import ensure_experiment

    client = _client(tracking_uri)
    experiment_id = ensure_experiment(params.tracking.experiment, runs_dir=runs)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status != 'FINISHED'",
        max_results=1,
    )
    if found:
        run_id: str = found[0].info.run_id
        client.set_tag(run_id, "dspex.resumed", "true")
        return run_id
    run = client.create_run(
        experiment_id,
        run_name=f"{params.optimizer}-{run_key[:8]}",
        tags={
            RUN_KEY_TAG: run_key,
            "dspex.optimizer": params.optimizer,
            "dspex.program": params.program,
        },
    )
    flat: dict[str, str] = {}
    _flat("", redact(params.model_dump(mode="json")), flat)
    for k, v in flat.items():
        client.log_param(run.info.run_id, k, v)
    traces = runs / "traces" / f"run_id={run.info.run_id}"
    client.set_tag(run.info.run_id, "dspex.traces", str(traces))
    return run.info.run_id


@task(name="log-candidates", cache_policy=NO_CACHE)
def log_candidates(
    tracking_uri: str, parent_run_id: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """One child run per candidate (explicit parent id), and the scores as a stepped metric
    (step = the row's index). Rows already logged are skipped, so it can be called as rows
    come in (the same rows first) and again by a resumed run."""
    client = _client(tracking_uri)
    client.log_dict(parent_run_id, [dict(r) for r in rows], "candidates.json")
    parent = client.get_run(parent_run_id)
    existing = {
        r.data.tags.get(CANDIDATE_TAG)
        for r in client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        )
    }
    from mlflow.entities import Metric, Param, RunTag

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
            parent.info.experiment_id,
            run_name=f"candidate-{row['id']}",
            tags={"mlflow.parentRunId": parent_run_id, CANDIDATE_TAG: row["id"]},
        )
        cid = child.info.run_id
        params = [Param("candidate", str(row["id"]))] + [
            Param(key, str(row[key])[:6000])
            for key in ("demos", "kind", "config")
            if row.get(key) is not None
        ]
        metrics = [
            Metric(metric, float(row[metric]), now, step)
            for metric in ("score", "errors", "lm_calls", "cache_hits")
            if row.get(metric) is not None
        ]
        tags = [RunTag("dspex.error", str(row["error"])[:500])] if row.get("error") else []
        client.log_batch(cid, metrics=metrics, params=params, tags=tags)
        client.set_terminated(cid, "FINISHED")


@task(name="log-plots", cache_policy=NO_CACHE)
def log_plots(tracking_uri: str, run_id: str, storage: str, study_name: str, out: Path) -> None:
    """The Optuna study's optimization history and parameter importances, as MLflow
    artifacts under ``plots/`` (a plot that cannot be drawn, e.g. importances of a single
    trial, is noted as a ``dspex.plot.*`` tag instead)."""
    import warnings

    import matplotlib
    import optuna

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    client = _client(tracking_uri)
    study = optuna.load_study(study_name=study_name, storage=storage)
    out.mkdir(parents=True, exist_ok=True)
    for name, plot in (
        ("optimization_history", ovm.plot_optimization_history),
        ("param_importances", ovm.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():  # optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                figure = plot(study).get_figure(root=True)
            if figure is None:
                continue
            try:
                figure.savefig(out / f"{name}.png", bbox_inches="tight")
            finally:
                plt.close(figure)
            client.log_artifact(run_id, str(out / f"{name}.png"), "plots")
        except Exception as e:  # too few trials for importances, etc.: the run goes on
            client.set_tag(run_id, f"dspex.plot.{name}", f"skipped: {e}"[:250])


@task(name="log-winner", cache_policy=NO_CACHE)
def log_winner(
    tracking_uri: str,
    run_id: str,
    winner: dspex.Module,
    best: Mapping[str, Any],
    program_path: Path,
    budget_exhausted: bool,
    usage: Mapping[str, Any],
    runs: Path,
) -> None:
    """Metrics, the candidate table, the program JSON and the dspex model of the winner."""
    from mlflow.entities import Metric, RunTag

    from dspex.integrations.mlflow import log_model

    client = _client(tracking_uri)
    values: dict[str, float] = {}
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
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in values.items()],
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
        try:
            log_model(winner, name="program", run_id=run_id)
        except UserError as e:  # e.g. a program class defined in a notebook: JSON only
            client.set_tag(run_id, "dspex.model_not_logged", str(e)[:500])
    client.set_terminated(run_id, "FINISHED")


@task(name="register-winner", cache_policy=NO_CACHE)
def register_winner(tracking_uri: str, run_id: str, model_name: str, alias: str | None) -> str:
    """Register the run's model (one version per run, even when re-run) and move the alias."""
    from dspex.integrations.mlflow import register, set_alias

    _client(tracking_uri)
    version = register(run_id, model_name, artifact_path="program")
    if alias:
        set_alias(model_name, alias, version.version)
    return str(version.version)


def publish_artifacts(
    rows: Sequence[Mapping[str, Any]],
    best_id: str,
    params: OptimizeParams,
    budget_exhausted: bool,
    version: str | None,
) -> None:
    """A candidate table and a markdown summary of the winner, shown in the Prefect UI."""
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
            f"{registered}{note}\n\n```json\n{json.dumps(table, indent=1)}\n```"
        ),
        key="dspex-winner",
        description="Winner",
    )
