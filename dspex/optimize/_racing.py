"""Racing candidates on growing prefixes of the validation set, dropping the hopeless early.

``BootstrapFewShotWithRandomSearch`` scores every candidate on every validation example and
keeps the best. Racing scores all candidates on the same seeded random order of the
examples, in *rungs* (half of them, then the rest); after a rung
a candidate is dropped when another one is ahead of it by more than chance could explain.
The survivors are scored on every example, so the winner's score is the same full-valset
score as without racing.

The rule, for a candidate ``i`` and any other ``j`` after ``m`` of ``N`` examples: drop
``i`` when ``mean_j - mean_i > t`` over those ``m`` examples, with

    t = sqrt(2 (1 - (m - 1) / N) ln(1 / delta') / m)

Serfling's bound for the mean of a sample drawn without replacement from ``N`` values in a
range of width 2 (a paired difference of two per-example scores in ``[0, 1]``): over the
random order, the prefix mean of ``j - i`` exceeds its full-valset mean by more than ``t``
with probability at most ``delta'``. If ``i`` is the candidate that would win on the full
valset (full mean of ``j - i`` ≤ 0), it is dropped by mistake with probability at most
``delta'`` per rival and rung; ``delta' = delta / ((K - 1) R)`` for ``K`` candidates and ``R``
decision rungs, so the winner survives with probability at least ``1 - delta``
(:data:`RACE_DELTA`, 0.05) whatever the scores are. Metrics outside ``[0, 1]`` (a row
scoring above 1) switch dropping off for the rest of the race.

Every decision depends only on the per-example scores, never on timing: a resumed or
repeated run drops the same candidates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["RACE_DELTA", "RacePlan", "drop_margin", "race_plan", "race_summary", "still_racing"]

K = TypeVar("K")

# The probability that the candidate a full evaluation would choose is dropped, at most.
RACE_DELTA = 0.05
# Fewer examples than this: every candidate is scored on all of them (nothing to gain).
MIN_RACE_ROWS = 20


@dataclass(frozen=True)
class RacePlan:
    """Which examples each rung scores, in order.

    Attributes:
        order: every validation row index, in the race's seeded random order.
        rungs: cumulative example counts after each rung; the last is ``len(order)``.
        delta: the per-comparison error probability (``RACE_DELTA`` split over rivals
            and decision rungs).
    """

    order: tuple[int, ...]
    rungs: tuple[int, ...]
    delta: float

    def rows(self, rung: int) -> list[int]:
        """The row indices rung ``rung`` (0-based) scores, beyond the earlier rungs'."""
        start = self.rungs[rung - 1] if rung else 0
        return list(self.order[start : self.rungs[rung]])


def race_plan(n_rows: int, n_candidates: int, seed: int) -> RacePlan:
    """The race for ``n_candidates`` on ``n_rows`` examples: half of them, a decision, then
    the rest (one rung, no dropping, for fewer than ``MIN_RACE_ROWS`` examples or fewer
    than two candidates).

    Example:
        >>> race_plan(100, 9, seed=0).rungs
        (50, 100)
    """
    order = list(range(n_rows))
    random.Random(f"{seed}-race").shuffle(order)
    if n_rows < MIN_RACE_ROWS or n_candidates < 2:
        return RacePlan(tuple(order), (n_rows,), 0.0)
    # One decision, halfway: with fewer examples the margin is too wide to drop anyone a
    # full evaluation would not also rank far behind, and each rung waits for every candidate.
    rungs = (n_rows // 2, n_rows)
    decisions = len(rungs) - 1
    return RacePlan(tuple(order), rungs, RACE_DELTA / ((n_candidates - 1) * decisions))


def drop_margin(m: int, n: int, delta: float) -> float:
    """How far ahead (as a difference of mean per-example scores) a rival must be after
    ``m`` of ``n`` examples for a candidate to be dropped at error probability ``delta``.

    Example:
        >>> round(drop_margin(50, 100, 0.05 / 16), 3)
        0.343
    """
    if m >= n:
        return 0.0
    return math.sqrt(2.0 * (1.0 - (m - 1) / n) * math.log(1.0 / delta) / m)


def still_racing(scores: Mapping[K, Sequence[float]], n: int, delta: float) -> list[K]:
    """The candidates that stay in the race, in the given order.

    ``scores`` holds each live candidate's per-example scores on the same examples so far
    (the same count for all). A candidate is dropped when some rival's mean is ahead of its
    own by more than :func:`drop_margin`. Nothing is dropped if a score lies outside
    ``[0, 1]``, where the bound does not hold.

    Example:
        >>> still_racing({"a": [1.0] * 50, "b": [0.0] * 50}, 100, 0.01)
        ['a']
    """
    if not scores:
        return []
    m = len(next(iter(scores.values())))
    values = [s for row in scores.values() for s in row]
    if m == 0 or any(s < 0.0 or s > 1.0 for s in values):
        return list(scores)
    best = max(sum(row) / m for row in scores.values())
    margin = drop_margin(m, n, delta)
    return [cid for cid, row in scores.items() if best - sum(row) / m <= margin]


def race_summary(parts: Sequence[Mapping[str, Any]], *, dropped: bool) -> dict[str, Any]:
    """One candidate's evaluation from its rungs' results (``evaluate_candidate``'s dicts).

    A finisher's ``score`` is its mean over every example, in percent, as one full
    evaluation reports it. A dropped candidate has no ``score``: ``raced_score`` is its
    mean over the ``n`` examples it was scored on (``dropped: True``).

    Example:
        >>> part = {"id": "a", "row_scores": [1.0, 0.0], "errors": 0, "first_error": None}
        >>> race_summary([part], dropped=False)["score"]
        50.0
    """
    row_scores = [x for p in parts for x in p["row_scores"]]
    mean = round(100.0 * sum(row_scores) / len(row_scores), 2) if row_scores else None
    costs = [p["cost"] for p in parts if p.get("cost") is not None]
    out: dict[str, Any] = {
        "id": parts[0]["id"],
        "score": None if dropped else mean,
        "n": len(row_scores),
        "errors": sum(int(p["errors"]) for p in parts),
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), None),
        "cost": sum(costs) if costs else None,
    }
    for key in ("lm_calls", "cache_hits", "prompt_tokens", "completion_tokens"):
        out[key] = sum(int(p.get(key) or 0) for p in parts)
    if dropped:
        out |= {"raced_score": mean, "dropped": True}
    return out
