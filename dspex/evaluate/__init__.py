"""Evaluation: ``Evaluate`` and its ``EvaluationResult``."""

from dspex.evaluate._evaluate import Evaluate, Metric
from dspex.evaluate._metrics import exact_match, requires_labels
from dspex.evaluate._result import EvaluationResult, EvaluationRow

__all__ = [
    "Evaluate",
    "EvaluationResult",
    "EvaluationRow",
    "Metric",
    "exact_match",
    "requires_labels",
]
