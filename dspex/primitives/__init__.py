"""Data and program primitives: ``Example``, ``Prediction``, ``Usage``, ``Module``."""

from dspex.primitives._example import Example
from dspex.primitives._module import Module, Parameter
from dspex.primitives._prediction import Completions, Prediction
from dspex.primitives._usage import Usage

__all__ = ["Completions", "Example", "Module", "Parameter", "Prediction", "Usage"]
