"""The nightly promotion flow: optimize, test the winner against the champion, promote.

1. fingerprint the program and the train/validation/test data; with the registry state this
   decides whether there is anything to do (an unchanged champion is not re-optimized);
2. run the configured optimizer's flow (a subflow: logged to MLflow like ``compile()``);
3. register its winner — once per promotion key, even across crashes and re-runs;
4. score the challenger and the current champion on the same held-out test split;
5. promote (tags, ``@previous``, then ``@champion``) only if the challenger wins by more
   than the margin; otherwise tag it rejected with both scores.

Every step is idempotent: a run that crashed anywhere, started again with the same
parameters, finishes the job with one version in the registry.
"""

from __future__ import annotations

import hashlib
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from dspex._paths import runs_dir
from dspex._redact import redacted_errors
from dspex.flows._deployed import deployment_params
from dspex.flows._results import run_storage
from dspex.flows.experiment import run_optimizer
from dspex.mlflow import configure_tracking
from dspex.optimize import EvaluateParams, NightlyParams, TrackingSpec, program_fingerprint
from dspex.optimize._demos import stable_json
from dspex.optimize._refs import resolve_program
from dspex.tasks.data import load_dataset
from dspex.tasks.evaluation import evaluate_program
from dspex.tasks.limits import lm_rate_limit
from dspex.tasks.promotion import decide, record_skip, register_challenger, registry_state

__all__ = ["nightly", "plan", "promotion_key"]


def promotion_key(params: NightlyParams, fingerprints: dict[str, str | None]) -> str:
    """What produced a challenger, hashed: program, data, optimizer and settings, LM, test
    split and model name. Where it runs (runs dir, concurrency, tracking) is left out."""
    body = {
        "optimize": params.optimize.model_dump(
            mode="json", exclude={"runs_dir", "concurrency", "tracking"}
        ),
        "testset": params.testset.model_dump(mode="json"),
        "model": params.promotion.model_name,
        "fingerprints": fingerprints,
    }
    return hashlib.sha256(stable_json(body).encode()).hexdigest()[:16]


def _fingerprints(params: NightlyParams, load: Any = load_dataset) -> dict[str, str | None]:
    opt = params.optimize
    program = resolve_program(opt.program)
    from dspex.integrations.mlflow._program import pack_program

    pack_program(program)  # a program the registry cannot rebuild: say so before any LM call
    train = load(opt.trainset, "trainset")
    val = load(opt.valset, "valset") if opt.valset else None
    test = load(params.testset, "testset")
    return {
        "program": program_fingerprint(program),
        "trainset": train["fingerprint"],
        "valset": val["fingerprint"] if val else None,
        "testset": test["fingerprint"],
    }


def _test_score(params: NightlyParams, version: str, fingerprint: str | None) -> float | None:
    opt = params.optimize
    evaluation = EvaluateParams(
        program=f"models:/{params.promotion.model_name}/{version}",
        metric=opt.metric,
        dataset=params.testset,
        lm=opt.lm,
        tracking=TrackingSpec(
            experiment=opt.tracking.experiment, tracking_uri=opt.tracking.tracking_uri
        ),
        concurrency=opt.concurrency,
        runs_dir=opt.runs_dir,
    )
    # Persisted as JSON only, in the run's storage (a deployment run's too).
    evaluate = evaluate_program.with_options(result_storage=run_storage())
    summary = evaluate(evaluation, fingerprint or "")
    if summary["errors"] == summary["n"]:
        return None
    score: float = summary["score"]
    return score


def _skip(params: NightlyParams, state: dict[str, Any], key: str) -> dict[str, Any] | None:
    """Nothing to do: the champion, or an already rejected challenger, came from this key."""
    champion, mine = state["champion"], state["challenger"]
    if not params.skip_unchanged:
        return None
    why = f"unchanged fingerprint: promotion key {key} (program, data, optimizer settings, LM"
    if champion is not None and champion["key"] == key:
        reason = f"{why}) is the one champion v{champion['version']} came from"
        return {
            "decision": "unchanged",
            "version": champion["version"],
            "skipped": True,
            "skip_reason": reason,
        }
    if mine is not None and mine["decision"] == "rejected":
        reason = f"{why}) is the one v{mine['version']} came from, already tested and rejected"
        return {
            "decision": "rejected",
            "version": mine["version"],
            "skipped": True,
            "skip_reason": reason,
        }
    return None


def _record_skip(uri: str, params: NightlyParams, skip: dict[str, Any]) -> None:
    """Say why nothing ran: a Prefect artifact (one per run, under the decision's key) and
    tags on the version left in place (the latest skip: when and why)."""
    name, version = params.promotion.model_name, skip["version"]
    record_skip(uri, name, version, skip["skip_reason"])
    create_markdown_artifact(
        key="dspex-promotion",
        description="Promotion decision: skipped",
        markdown=(
            f"# {name} v{version}: **skipped** ({skip['decision']})\n\n"
            f"Nothing to optimize: {skip['skip_reason']}.\n\nNo LM call was made; set "
            "`skip_unchanged = false` to run anyway."
        ),
    )


def plan(params: NightlyParams) -> dict[str, Any]:
    """What a run with these parameters would do — no flow, no LM call (``--dry-run``)."""
    opt, promo = params.optimize, params.promotion
    uri = configure_tracking(opt.tracking.tracking_uri, runs_dir=runs_dir(opt.runs_dir))
    fps = _fingerprints(params, load=load_dataset.fn)
    key = promotion_key(params, fps)
    state = registry_state.fn(uri, promo.model_name, promo.champion_alias, key)
    skip = _skip(params, state, key)
    return {
        "promotion_key": key,
        "model_name": promo.model_name,
        "champion": state["champion"],
        "fingerprints": fps,
        "action": "skip" if skip else "optimize, test against the champion, decide",
        **(skip or {}),
    }


@flow(name="dspex-nightly", persist_result=False, validate_parameters=False)
def nightly(params: NightlyParams) -> dict[str, Any]:
    """Optimize, then promote the winner to ``@champion`` only if it beats the champion on
    the test split; returns what was decided. A deployment run's parameters may be given in
    part: they are merged over the deployment's (``flows/_deployed.py``)."""
    params = deployment_params(NightlyParams, params)
    # What it raises goes to the state message and logs: no secret in it.
    with redacted_errors(), lm_rate_limit(params.optimize):
        return _nightly(params)


def _nightly(params: NightlyParams) -> dict[str, Any]:
    opt, promo = params.optimize, params.promotion
    uri = configure_tracking(opt.tracking.tracking_uri, runs_dir=runs_dir(opt.runs_dir))
    fps = _fingerprints(params)
    key = promotion_key(params, fps)
    state = registry_state(uri, promo.model_name, promo.champion_alias, key)
    champion = state["champion"]
    summary: dict[str, Any] = {"promotion_key": key, "model_name": promo.model_name}
    skip = _skip(params, state, key)
    if skip is not None:
        _record_skip(uri, params, skip)
        return {**summary, **skip}
    result = run_optimizer(opt)
    version = register_challenger(
        uri,
        result["mlflow_run_id"],
        promo.model_name,
        key,
        {"dspex.optimizer": opt.optimizer, "dspex.validation_score": str(result.get("score"))},
    )
    score = _test_score(params, version, fps["testset"])
    previous = None
    if champion is not None and champion["version"] != version:
        previous = {**champion, "score": _test_score(params, champion["version"], fps["testset"])}
    outcome = decide(uri, promo.model_name, version, score, previous, promo.model_dump())
    create_markdown_artifact(
        key="dspex-promotion",
        description="Promotion decision",
        markdown=(
            f"# {promo.model_name} v{version}: **{outcome['decision']}**\n\n"
            f"{outcome['reason']}.\n\nTest score: {score}; champion "
            f"{'v' + previous['version'] if previous else '(none)'}: "
            f"{previous['score'] if previous else '-'}; margin {promo.margin:g}."
        ),
    )
    return {
        **summary,
        **outcome,
        "version": version,
        "test_score": score,
        "champion_test_score": previous["score"] if previous else None,
        "mlflow_run_id": result["mlflow_run_id"],
    }
