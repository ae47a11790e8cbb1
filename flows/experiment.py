"""The experiment flow: any optimizer, chosen by its parameters — what the Prefect UI's
"Run" form starts (one pydantic model: program, data, optimizer and settings, LM, budget)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from dspex.flows._runners import with_task_runner
from dspex.flows.fewshot import FLOWS
from dspex.flows.mipro import mipro
from dspex.optimize import OptimizeParams

__all__ = ["experiment", "run_optimizer"]


def run_optimizer(params: OptimizeParams) -> dict[str, Any]:
    """Run the optimizer's flow (as a subflow when called from a flow)."""
    if params.optimizer == "MIPROv2":
        flow = mipro
    elif params.optimizer == "BootstrapFinetune":
        from dspex.flows.finetune import finetune

        flow = finetune
    else:
        flow = FLOWS[params.optimizer]
    result: dict[str, Any] = with_task_runner(flow, params)(params)
    return result


@flow(name="dspex-experiment", persist_result=False)
def experiment(params: OptimizeParams) -> dict[str, Any]:
    """Optimize a program with the optimizer its parameters name; logged and (optionally)
    registered like ``compile()``."""
    return run_optimizer(params)
