"""Modules: ``Predict``, ``ChainOfThought``, ``ReAct``, ``ProgramOfThought``, ``CodeAct``,
``Retrieve``; composing
modules: ``BestOfN``, ``Refine``, ``MultiChainComparison``, ``Parallel``."""

from dspex.modules._code_act import CodeAct
from dspex.modules._cot import ChainOfThought
from dspex.modules._multi_chain import MultiChainComparison
from dspex.modules._predict import Predict
from dspex.modules._program_of_thought import ProgramOfThought, ProgramOfThoughtError
from dspex.modules._react import ReAct
from dspex.modules._refine import BestOfN, OfferFeedback, Refine
from dspex.modules._retrieve import Retrieve
from dspex.primitives._batch import Parallel

__all__ = [
    "BestOfN",
    "ChainOfThought",
    "CodeAct",
    "MultiChainComparison",
    "OfferFeedback",
    "Parallel",
    "Predict",
    "ProgramOfThought",
    "ProgramOfThoughtError",
    "ReAct",
    "Refine",
    "Retrieve",
]
