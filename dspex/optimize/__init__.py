"""The optimizers' algorithm steps, policies and parameters: plain functions and values that
the flows (``dspex.flows``) run as Prefect tasks. The optimizer classes users construct are
in :mod:`dspex.teleprompt`."""

from dspex.optimize._bootstrap import (
    BootstrapSettings,
    bootstrap_demos,
    one_demo_per_example,
    run_with_trace,
)
from dspex.optimize._demos import (
    DemoSet,
    apply_demos,
    dataset_fingerprint,
    labeled_demos,
    program_fingerprint,
)
from dspex.optimize._params import (
    BudgetSpec,
    DatasetSpec,
    EvaluateParams,
    LMSpec,
    NightlyParams,
    OptimizeParams,
    PromotionSpec,
    RunInputs,
    TaskRunnerSpec,
    TrackingSpec,
)
from dspex.optimize._refs import register_object, resolve
from dspex.optimize._search import build_candidate, candidate_specs, select_best

__all__ = [
    "BootstrapSettings",
    "BudgetSpec",
    "DatasetSpec",
    "DemoSet",
    "EvaluateParams",
    "LMSpec",
    "NightlyParams",
    "OptimizeParams",
    "PromotionSpec",
    "RunInputs",
    "TaskRunnerSpec",
    "TrackingSpec",
    "apply_demos",
    "bootstrap_demos",
    "build_candidate",
    "candidate_specs",
    "dataset_fingerprint",
    "labeled_demos",
    "one_demo_per_example",
    "program_fingerprint",
    "register_object",
    "resolve",
    "run_with_trace",
    "select_best",
]
