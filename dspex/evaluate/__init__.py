"""Evaluation: ``Evaluate`` and its ``EvaluationResult``."""

from dspex.evaluate._aggregation import majority
from dspex.evaluate._evaluate import Evaluate, Metric
from dspex.evaluate._metrics import (
    answer_exact_match,
    exact_match,
    normalize_text,
    requires_labels,
)
from dspex.evaluate._result import EvaluationResult, EvaluationRow

__all__ = [
    "Evaluate",
    "EvaluationResult",
    "EvaluationRow",
    "Metric",
    "answer_exact_match",
    "exact_match",
    "majority",
    "normalize_text",
    "requires_labels",
]
