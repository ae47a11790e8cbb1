"""``EvaluationResult``: the score, one row per example, and a summary."""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class EvaluationResult:
    """What ``Evaluate`` returns.

    Attributes:
        score: mean metric value in percent over all examples; failed examples count as 0
            here and are listed in ``errors`` (``score_excluding_errors`` leaves them out).
        rows: one ``EvaluationRow`` per example, in devset order.
    """

    rows: list[EvaluationRow]
    elapsed_s: float = 0.0

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
        if not self.rows:
            return 0.0
        return round(100.0 * sum(r.score or 0.0 for r in self.rows) / len(self.rows), 2)

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
    def results(self) -> list[tuple[Example, Prediction | None, float | None]]:
        """DSPy's shape: ``(example, prediction, score)`` triples."""
        return [(r.example, r.prediction, r.score) for r in self.rows]

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

    def __float__(self) -> float:
        return self.score

    def __repr__(self) -> str:
        return f"EvaluationResult(score={self.score}, n={self.n}, errors={self.n_errors})"
