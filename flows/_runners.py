"""Where a run's tasks execute, by configuration (``OptimizeParams.task_runner``).

``threads`` (the default) is the flow's own thread pool. ``dask`` submits the tasks to a Dask
cluster through prefect-dask: a scheduler at ``dask_address``, or a temporary local cluster
of ``dask_workers`` processes. Tasks take only values — references, fingerprints, settings —
so any process can run them; references to objects that live only in this process (what
``compile()`` makes for a program, dataset or metric passed as a Python object) cannot
cross, and are refused before the run starts.
"""

from __future__ import annotations

from typing import Any

from dspex.errors import UserError
from dspex.optimize import OptimizeParams

__all__ = ["with_task_runner"]

_LOCAL = "registry:"


def with_task_runner(flow: Any, params: OptimizeParams) -> Any:
    """``flow`` with the task runner ``params`` asks for."""
    spec = params.task_runner
    if spec.kind == "threads":
        return flow
    try:
        from prefect_dask import DaskTaskRunner  # type: ignore[attr-defined]
    except ImportError:
        raise UserError(
            "task_runner.kind = 'dask' needs prefect-dask: pip install 'dspex[dask]'."
        ) from None
    _check_portable(params)
    if spec.dask_address:
        runner = DaskTaskRunner(address=spec.dask_address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": spec.dask_workers,
                "threads_per_worker": 4,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return flow.with_options(task_runner=runner)


def _check_portable(params: OptimizeParams) -> None:
    refs = {
        "program": params.program,
        "metric": params.metric,
        "trainset": params.trainset.ref,
        "valset": params.valset.ref if params.valset else None,
        "lm": params.lm.ref if params.lm else None,
        "teacher": params.settings.get("teacher"),
        "prompt_model": params.settings.get("prompt_model"),
    }
    local = sorted(k for k, v in refs.items() if isinstance(v, str) and v.startswith(_LOCAL))
    if local:
        raise UserError(
            f"On a Dask cluster, tasks run in other processes, which cannot see the Python "
            f"objects passed for {', '.join(local)}. Name them by 'package.module:attr' "
            "references (or use bundled tasks, files, 'cot:...' programs and an LM spec), "
            "or run on threads."
        )
