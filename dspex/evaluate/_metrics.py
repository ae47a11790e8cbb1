"""Ready-made metrics, and ``requires_labels`` to declare the labels a metric reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from dspex.primitives import Example, Prediction

__all__ = ["exact_match", "requires_labels"]

M = TypeVar("M", bound=Callable[..., Any])


def requires_labels(*names: str) -> Callable[[M], M]:
    """Declare the labels a metric reads, so ``Evaluate`` checks them before any LM call.

    With names, every example needs each of them, not ``None``. With none, the example needs
    a label named like one of the program's outputs, and none of those may be ``None`` (what
    :func:`exact_match` compares). The declaration is the metric's ``required_labels``
    attribute (a tuple of names, or ``"outputs"``), which a callable object may also set.

    Example:
        >>> import dspex
        >>> from dspex.evaluate import requires_labels
        >>> @requires_labels("answer")
        ... def close_enough(example, prediction, trace=None):
        ...     return abs(float(example.answer) - float(prediction.answer)) < 0.01
        >>> close_enough.required_labels
        ('answer',)
    """

    def declare(metric: M) -> M:
        # Functions take attributes; a metric object may define ``required_labels`` itself.
        metric.required_labels = names or "outputs"  # type: ignore[attr-defined]
        return metric

    return declare


def _norm(value: Any) -> str:
    return " ".join(str(value).strip().lower().split()).rstrip(".")


@requires_labels()
def exact_match(example: Example, prediction: Prediction, trace: Any = None) -> bool:
    """Whether every label the prediction also has matches, ignoring case and spacing.

    ``Evaluate`` rejects examples with no such label, or a ``None`` one, before any LM call
    (a ``DataError`` naming the rows) instead of scoring them 0.

    Example:
        >>> import dspex
        >>> ex = dspex.Example(question="?", answer="Paris").with_inputs("question")
        >>> exact_match(ex, dspex.Prediction(answer="paris "))
        True
    """
    labels = example.labels()
    shared = [k for k in labels if k in prediction]
    return bool(shared) and all(_norm(labels[k]) == _norm(prediction[k]) for k in shared)
