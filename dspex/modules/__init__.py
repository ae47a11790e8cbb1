"""Modules: ``Predict``, ``ChainOfThought``, ``ReAct``, ``ProgramOfThought``, ``CodeAct``,
``Retrieve``."""

from dspex.modules._code_act import CodeAct
from dspex.modules._cot import ChainOfThought
from dspex.modules._predict import Predict
from dspex.modules._program_of_thought import ProgramOfThought, ProgramOfThoughtError
from dspex.modules._react import ReAct
from dspex.modules._retrieve import Retrieve

__all__ = [
    "ChainOfThought",
    "CodeAct",
    "Predict",
    "ProgramOfThought",
    "ProgramOfThoughtError",
    "ReAct",
    "Retrieve",
]
