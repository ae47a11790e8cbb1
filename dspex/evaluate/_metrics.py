"""Ready-made metrics."""

from __future__ import annotations

from typing import Any

from dspex.primitives import Example, Prediction

__all__ = ["exact_match"]


def _norm(value: Any) -> str:
    return " ".join(str(value).strip().lower().split()).rstrip(".")


def exact_match(example: Example, prediction: Prediction, trace: Any = None) -> bool:
    """Whether every label the prediction also has matches, ignoring case and spacing.

    Example:
        >>> import dspex
        >>> ex = dspex.Example(question="?", answer="Paris").with_inputs("question")
        >>> exact_match(ex, dspex.Prediction(answer="paris "))
        True
    """
    labels = example.labels()
    shared = [k for k in labels if k in prediction]
    return bool(shared) and all(_norm(labels[k]) == _norm(prediction[k]) for k in shared)
