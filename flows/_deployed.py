"""Deployment runs: parameters given in part are merged over the deployment's own.

Prefect merges a run's parameters over its deployment's by top-level name only, so
``--params '{"params": {"optimizer": "MIPROv2"}}'`` would replace the deployment's whole
``params`` and fail validation. The deployment flows (``nightly``, ``experiment``) take their
parameters unvalidated (``validate_parameters=False``; their deployments do not enforce the
schema either) and validate them here, after :func:`dspex.optimize._merge.merge_params` has
put the run's part over the deployment's parameters. Local runs pass the model itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dspex.errors import ConfigurationError, DspexError
from dspex.optimize._merge import merge_params

__all__ = ["deployment_params"]

P = TypeVar("P", bound=BaseModel)


def _deployment_defaults(name: str) -> Mapping[str, Any] | None:
    """The deployment's own value of parameter ``name``, when this flow run has one."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    flow_run = ctx.flow_run if ctx is not None else None
    if flow_run is None or flow_run.deployment_id is None:
        return None
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(flow_run.deployment_id)
    value = (deployment.parameters or {}).get(name)
    return value if isinstance(value, Mapping) else None


def _paths(given: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in given.items():
        if isinstance(value, Mapping) and value:
            yield from _paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def deployment_params(model: type[P], given: P | Mapping[str, Any], name: str = "params") -> P:
    """The flow's parameters as ``model``: ``given`` itself when it is one (a local run);
    otherwise the run's JSON, merged over the deployment's parameter ``name`` when the run
    belongs to a deployment, then validated (a bad value fails here, before any LM call)."""
    if isinstance(given, model):
        return given
    if not isinstance(given, Mapping):
        raise ConfigurationError(f"The run's {name!r} parameter must be a JSON object.")
    defaults = _deployment_defaults(name)
    if defaults is None:
        return _validated(model, given, name)
    from prefect.logging import get_run_logger

    get_run_logger().info(
        "Parameters: the deployment's %r, with these from the run: %s.",
        name,
        ", ".join(sorted(_paths(given))) or "none",
    )
    return _validated(model, merge_params(model, defaults, given), name)


def _validated(model: type[P], value: Mapping[str, Any], name: str) -> P:
    """``model`` from ``value``; a ``ConfigurationError`` naming the bad fields, without
    their values (which Prefect would write to the run's state message and logs)."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        for err in e.errors():
            raised = err.get("ctx", {}).get("error")
            if isinstance(raised, DspexError):  # an UnknownSettingError leaves as itself
                raise raised from None
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or name}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigurationError(
            f"The run's {name!r} parameters are not valid: {problems}."
        ) from None
