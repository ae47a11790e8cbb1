"""Modules: ``Predict``, ``ChainOfThought``, ``ReAct``."""

from dspex.modules._cot import ChainOfThought
from dspex.modules._predict import Predict
from dspex.modules._react import ReAct

__all__ = ["ChainOfThought", "Predict", "ReAct"]
