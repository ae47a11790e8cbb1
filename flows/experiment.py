"""The experiment flow: any optimizer, chosen by its parameters — what the Prefect UI's
"Run" form starts (one pydantic model: program, data, optimizer and settings, LM, budget).

As a deployment run, parameters given in part are merged over the deployment's
(``flows/_deployed.py``), and the optimizer's tasks persist their results as JSON only
(``flows/_results.py``), as a local run's do."""

from __future__ import annotations

from typing import Any

from prefect import flow

from dspex.flows._deployed import deployment_params
from dspex.flows._results import run_storage
from dspex.flows._runners import with_task_runner
from dspex.flows.fewshot import FLOWS
from dspex.flows.mipro import mipro
from dspex.optimize import OptimizeParams

__all__ = ["experiment", "run_optimizer"]


def run_optimizer(params: OptimizeParams) -> dict[str, Any]:
    """Run the optimizer's flow as a subflow of the current flow run, its task results in
    the run's storage read as JSON only."""
    if params.optimizer == "MIPROv2":
        flow = mipro
    elif params.optimizer == "BootstrapFinetune":
        from dspex.flows.finetune import finetune

        flow = finetune
    else:
        flow = FLOWS[params.optimizer]
    flow = with_task_runner(flow, params).with_options(result_storage=run_storage())
    result: dict[str, Any] = flow(params)
    return result


@flow(name="dspex-experiment", persist_result=False, validate_parameters=False)
def experiment(params: OptimizeParams) -> dict[str, Any]:
    """Optimize a program with the optimizer its parameters name; logged and (optionally)
    registered like ``compile()``. A deployment run's parameters may be given in part."""
    return run_optimizer(deployment_params(OptimizeParams, params))
