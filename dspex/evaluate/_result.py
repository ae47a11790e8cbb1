"""``EvaluationResult``: the score, one row per example, and a summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dspex._jsonable import json_default_or_str
from dspex._redact import redact_text
from dspex.primitives import Example, Prediction, Usage

__all__ = ["EvaluationResult", "EvaluationRow"]


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=json_default_or_str)


@dataclass(frozen=True)
class EvaluationRow:
    """One example's outcome: its prediction and score, or the error it raised."""

    row_id: Any
    example: Example
    prediction: Prediction | None
    score: float | None
    error: str | None
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    # What the metric returned (a bool, a number, a Prediction with a score), for DSPy's
    # ``results``; ``score`` is its float.
    value: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def failed(
        cls,
        row_id: Any,
        example: Example,
        exc: BaseException,
        latency_s: float,
        prediction: Prediction | None = None,
    ) -> EvaluationRow:
        return cls(
            row_id=row_id,
            example=example,
            prediction=prediction,
            score=None,
            error=redact_text(f"{type(exc).__name__}: {exc}"),
            usage=prediction.usage if prediction is not None else Usage(),
            latency_s=latency_s,
            exception=exc,
        )


class EvaluationResult:
    """What ``Evaluate`` returns: DSPy's ``score`` and ``results``, and dspex's rows.

    Built by ``Evaluate`` from its rows, or as DSPy builds it:
    ``EvaluationResult(score=100.0, results=[(example, prediction, score), ...])``.

    Attributes:
        score: mean metric value in percent over all examples (DSPy's ``score``); failed
            examples count as ``failure_score`` and are listed in ``errors``
            (``score_excluding_errors`` leaves them out).
        results: DSPy's ``(example, prediction, score)`` triples, in devset order; a failed
            example has an empty ``Prediction`` (or the one its metric failed on) and
            ``failure_score``.
        rows: one ``EvaluationRow`` per example, in devset order.

    Like DSPy's, it compares and adds as its ``score`` and reads as ``result["score"]``.
    """

    def __init__(
        self,
        score: float | None = None,
        results: Sequence[tuple[Example, Any, Any]] | None = None,
        *,
        rows: Sequence[EvaluationRow] | None = None,
        elapsed_s: float = 0.0,
        failure_score: float = 0.0,
    ) -> None:
        if rows is None:
            rows = [_row_from_triple(i, t) for i, t in enumerate(results or ())]
        self.rows: list[EvaluationRow] = list(rows)
        self.elapsed_s = elapsed_s
        self.failure_score = failure_score
        self._score = score
        self._results = list(results) if results is not None else None

    @property
    def n(self) -> int:
        return len(self.rows)

    @cached_property
    def errors(self) -> list[EvaluationRow]:
        return [r for r in self.rows if r.error is not None]

    @property
    def n_errors(self) -> int:
        return len(self.errors)

    @cached_property
    def score(self) -> float:
        if self._score is not None:
            return self._score
        if not self.rows:
            return 0.0
        total = sum(
            self.failure_score if r.error is not None else r.score or 0.0 for r in self.rows
        )
        return round(100.0 * total / len(self.rows), 2)

    @cached_property
    def score_excluding_errors(self) -> float | None:
        scored = [r.score for r in self.rows if r.score is not None]
        return round(100.0 * sum(scored) / len(scored), 2) if scored else None

    @cached_property
    def usage(self) -> Usage:
        total = Usage()
        for r in self.rows:
            total = total + r.usage
        return total

    @property
    def results(self) -> list[tuple[Example, Any, Any]]:
        """DSPy's shape: ``(example, prediction, score)`` triples."""
        if self._results is not None:
            return list(self._results)
        return [
            (r.example, r.prediction, r.value if r.value is not None else r.score)
            if r.error is None
            else (r.example, r.prediction or Prediction(), self.failure_score)
            for r in self.rows
        ]

    @cached_property
    def table(self) -> Any:
        """The rows as a ``pyarrow.Table`` (inputs, outputs and labels as JSON text)."""
        import pyarrow as pa

        def inputs_of(r: EvaluationRow) -> dict[str, Any]:
            return r.example.inputs().to_dict()

        return pa.table(
            {
                "row_id": pa.array([str(r.row_id) for r in self.rows], pa.string()),
                "inputs": [_to_json(inputs_of(r)) for r in self.rows],
                "labels": [_to_json(r.example.labels().to_dict()) for r in self.rows],
                "outputs": [
                    _to_json(r.prediction.to_dict()) if r.prediction is not None else None
                    for r in self.rows
                ],
                "score": pa.array([r.score for r in self.rows], pa.float64()),
                "error": pa.array([r.error for r in self.rows], pa.string()),
                "latency_s": pa.array([r.latency_s for r in self.rows], pa.float64()),
                "prompt_tokens": [r.usage.prompt_tokens for r in self.rows],
                "completion_tokens": [r.usage.completion_tokens for r in self.rows],
                "cache_hits": [r.usage.cache_hits for r in self.rows],
            }
        )

    def to_pandas(self) -> Any:
        """The rows as a pandas ``DataFrame`` (needs pandas)."""
        return self.table.to_pandas()

    def summary(self) -> str:
        u = self.usage
        cost = f"${u.cost:.4f}" if u.cost is not None else "unknown"
        lines = [
            f"score: {self.score:.2f}% over {self.n} examples ({self.n_errors} errors)",
            f"LM calls: {u.calls} ({u.cache_hits} from cache), tokens in/out: "
            f"{u.prompt_tokens}/{u.completion_tokens}, cost: {cost}",
            f"time: {self.elapsed_s:.2f}s",
        ]
        if self.errors:
            lines.append("first errors:")
            lines += [f"  row {r.row_id}: {r.error[:200]}" for r in self.errors[:5] if r.error]
        return "\n".join(lines)

    # -- DSPy's EvaluationResult is a Prediction: it reads, compares and adds as its score --
    def __getitem__(self, key: str) -> Any:
        if key not in ("score", "results"):
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return ["score", "results"]

    def __float__(self) -> float:
        return float(self.score)

    def __add__(self, other: Any) -> float:
        return float(self) + float(other)

    def __radd__(self, other: Any) -> float:
        return float(other) + float(self)

    def __truediv__(self, other: Any) -> float:
        return float(self) / float(other)

    def __rtruediv__(self, other: Any) -> float:
        return float(other) / float(self)

    def __lt__(self, other: Any) -> bool:
        return float(self) < float(other)

    def __le__(self, other: Any) -> bool:
        return float(self) <= float(other)

    def __gt__(self, other: Any) -> bool:
        return float(self) > float(other)

    def __ge__(self, other: Any) -> bool:
        return float(self) >= float(other)

    def __repr__(self) -> str:
        return f"EvaluationResult(score={self.score}, results=<list of {self.n} results>)"


def _row_from_triple(index: int, triple: tuple[Example, Any, Any]) -> EvaluationRow:
    """A row for one of DSPy's ``(example, prediction, score)`` triples."""
    example, prediction, score = triple
    row_id = example.get("id", index) if isinstance(example, Example) else index
    pred = prediction if isinstance(prediction, Prediction) else None
    try:
        value = float(score) if score is not None else None
    except (TypeError, ValueError):
        value = None
    return EvaluationRow(
        row_id=row_id, example=example, prediction=pred, score=value, error=None, value=score
    )
