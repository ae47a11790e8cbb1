"""The optimizers users construct (DSPy's ``teleprompt``): ``LabeledFewShot``,
``BootstrapFewShot``, ``BootstrapFewShotWithRandomSearch``, ``MIPROv2``, ``BootstrapFinetune``.

Each is a settings object whose ``compile`` runs the optimizer's Prefect flow
(:mod:`dspex.flows`) in this process. The algorithm steps the flows run are in
:mod:`dspex.optimize`.
"""

from dspex.teleprompt._optimizers import (
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    BootstrapFinetune,
    LabeledFewShot,
    MIPROv2,
    OptimizationResult,
    Optimizer,
)

__all__ = [
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "LabeledFewShot",
    "MIPROv2",
    "OptimizationResult",
    "Optimizer",
]
