"""Registry tasks of the promotion flow: where the registry stands, register the challenger
(one version per promotion key), and promote or reject it.

A promotion key hashes everything that produced the challenger (program, data, optimizer
settings, test split). It is written on the version together with the version itself, so a
re-run after a crash finds the version it registered instead of making another one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

import dspex.mlflow
from dspex._redact import redacting
from dspex.integrations.mlflow._registry import KEY_TAG

__all__ = [
    "DECISION_TAG",
    "SKIPPED_AT_TAG",
    "SKIP_REASON_TAG",
    "decide",
    "record_skip",
    "register_challenger",
    "registry_state",
]

DECISION_TAG = "dspex.decision"
# The latest nightly run that found nothing to do, on the version it left in place.
SKIPPED_AT_TAG = "dspex.nightly_skipped_at"
SKIP_REASON_TAG = "dspex.nightly_skip_reason"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _version_info(version: Any) -> dict[str, Any]:
    return {
        "version": str(version.version),
        "key": version.tags.get(KEY_TAG),
        "decision": version.tags.get(DECISION_TAG),
        "run_id": version.run_id,
    }


@task(name="registry-state", cache_policy=NO_CACHE)
@redacting  # what it raises becomes the task's state message
def registry_state(tracking_uri: str, model_name: str, alias: str, key: str) -> dict[str, Any]:
    """The current champion, and the version already registered for this key (if any)."""
    dspex.mlflow.configure_tracking(tracking_uri)  # the registry helpers' backend
    champion = dspex.mlflow.get_version_by_alias(model_name, alias)
    mine = dspex.mlflow.find_version(model_name, KEY_TAG, key)
    return {
        "champion": _version_info(champion) if champion is not None else None,
        "challenger": _version_info(mine) if mine is not None else None,
    }


@task(name="register-challenger", cache_policy=NO_CACHE)
@redacting
def register_challenger(
    tracking_uri: str, run_id: str, model_name: str, key: str, tags: Mapping[str, str]
) -> str:
    """Register the run's model as a version of ``model_name`` (once per key)."""
    dspex.mlflow.configure_tracking(tracking_uri)
    version = dspex.mlflow.register(run_id, model_name, key=key, tags=dict(tags))
    return str(version.version)


@task(name="promote-or-reject", cache_policy=NO_CACHE)
@redacting
def decide(
    tracking_uri: str,
    model_name: str,
    version: str,
    score: float | None,
    champion: Mapping[str, Any] | None,
    promotion: Mapping[str, Any],
) -> dict[str, Any]:
    """Promote ``version`` if it beats the champion's test score by more than the margin
    (or there is no champion); otherwise tag it rejected. Tags first, aliases last: until
    the champion alias moves, the old champion is what services load."""
    client = dspex.mlflow.tracking_client(tracking_uri)
    margin = float(promotion["margin"])
    champion_score = champion.get("score") if champion else None
    if score is None:
        decision, why = "rejected", "the challenger could not be scored on the test split"
    elif champion is None:
        decision, why = "promoted", "there was no champion"
    elif champion_score is None:
        decision, why = "promoted", "the champion could not be scored on the test split"
    elif score > champion_score + margin:
        decision, why = "promoted", f"{score:.2f} > {champion_score:.2f} + margin {margin:g}"
    else:
        decision, why = "rejected", f"{score:.2f} <= {champion_score:.2f} + margin {margin:g}"
    tags = {
        DECISION_TAG: decision,
        "dspex.decision_reason": why,
        "dspex.test_score": "" if score is None else f"{score:.4f}",
        "dspex.champion_version": champion["version"] if champion else "",
        "dspex.champion_test_score": "" if champion_score is None else f"{champion_score:.4f}",
        "dspex.margin": f"{margin:g}",
        "dspex.decided_at": _now(),
    }
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    replaced = None
    if decision == "promoted":
        replaced = dspex.mlflow.promote(
            model_name,
            version,
            alias=promotion["champion_alias"],
            previous=promotion.get("previous_alias"),
        )
    return {"decision": decision, "reason": why, "replaced": replaced}


@task(name="record-skip", cache_policy=NO_CACHE)
@redacting
def record_skip(tracking_uri: str, model_name: str, version: str, reason: str) -> dict[str, str]:
    """Tag ``version`` (the champion, or the challenger already rejected) with why a nightly
    run skipped: when, and the reason. Its decision tags stay as they were."""
    client = dspex.mlflow.tracking_client(tracking_uri)
    tags = {SKIPPED_AT_TAG: _now(), SKIP_REASON_TAG: reason}
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    return tags
