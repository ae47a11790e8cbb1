"""``majority``: the most common answer among completions (DSPy's ``dspy.majority``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dspex.errors import UserError
from dspex.evaluate._metrics import normalize_text
from dspex.primitives import Completions, Example, Prediction

__all__ = ["default_normalize", "majority"]


def default_normalize(s: Any) -> str | None:
    """``normalize_text`` of the value (its ``str`` for a typed one), ``None`` when empty."""
    return normalize_text(s if isinstance(s, str) else str(s)) or None


def majority(
    prediction_or_completions: Prediction | Completions | Sequence[Any],
    normalize: Callable[[Any], Any] | None = default_normalize,
    field: str | None = None,
) -> Prediction:
    """The completion whose ``field`` value is the most common, as a ``Prediction``.

    ``field`` defaults to the signature's last output (else the completions' last key).
    Values that ``normalize`` maps to ``None`` are not counted (unless all are); a tie goes to
    the value seen first.

    Example:
        >>> import dspex
        >>> votes = [{"answer": "Paris"}, {"answer": "paris."}, {"answer": "Lyon"}]
        >>> dspex.majority(votes).answer
        'Paris'
    """
    if isinstance(prediction_or_completions, Prediction):
        completions: Any = prediction_or_completions.completions
    elif isinstance(prediction_or_completions, Completions | list | tuple):
        completions = prediction_or_completions
    else:
        raise UserError(
            "majority(...) takes a Prediction, Completions or a list of completions, got "
            f"{type(prediction_or_completions).__name__}."
        )
    if len(completions) == 0:
        raise UserError("majority(...) needs at least one completion.")
    signature = getattr(completions, "signature", None)
    if not field:
        keys = list(signature.output_fields) if signature is not None else list(completions[0])
        field = keys[-1]
    norm = normalize or (lambda x: x)
    values = [norm(c[field]) for c in completions]
    counts: dict[Any, int] = {}
    for value in [v for v in values if v is not None] or values:
        counts[value] = counts.get(value, 0) + 1
    winner = max(counts, key=counts.__getitem__)  # max keeps the first of equal counts
    chosen = completions[values.index(winner)]
    as_dict = Example.to_dict(chosen) if isinstance(chosen, Example) else dict(chosen)
    return Prediction.from_completions([as_dict], signature=signature)
