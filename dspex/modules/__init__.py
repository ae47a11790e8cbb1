"""Modules: ``Predict``, ``ChainOfThought``."""

from dspex.modules._cot import ChainOfThought
from dspex.modules._predict import Predict

__all__ = ["ChainOfThought", "Predict"]
