"""Ready-made metrics, and ``requires_labels`` to declare the labels a metric reads."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dspex.errors import DataError
from dspex.primitives import Example, Prediction

__all__ = ["answer_exact_match", "exact_match", "normalize_text", "requires_labels"]

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


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """DSPy's answer normalization: Unicode NFD, lower case, no punctuation, no English
    articles, single spaces.

    Example:
        >>> normalize_text("The,  Eiffel  Tower!")
        'eiffel tower'
    """
    lowered = unicodedata.normalize("NFD", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())


def _token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalize_text(prediction).split(), normalize_text(reference).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


@requires_labels("answer")
def answer_exact_match(
    example: Example, prediction: Prediction, trace: Any = None, frac: float = 1.0
) -> bool:
    """DSPy's ``answer_exact_match``: ``prediction.answer`` matches ``example.answer`` (a
    string, or a list of acceptable strings) after :func:`normalize_text`; with ``frac``
    below 1, a token F1 of at least ``frac`` with one of them is enough.

    Example:
        >>> import dspex
        >>> ex = dspex.Example(answer=["Eiffel Tower", "Louvre"])
        >>> answer_exact_match(ex, dspex.Prediction(answer="The Eiffel Tower"))
        True
    """
    expected = example.answer
    if isinstance(expected, str):
        references: Sequence[str] = [expected]
    elif isinstance(expected, list):
        references = expected
    else:
        raise DataError(
            f"answer_exact_match compares with a str or a list of str; example.answer is a "
            f"{type(expected).__name__}."
        )
    answer = str(prediction.answer)
    if frac >= 1.0:
        return any(normalize_text(answer) == normalize_text(ref) for ref in references)
    return max((_token_f1(answer, ref) for ref in references), default=0.0) >= frac
