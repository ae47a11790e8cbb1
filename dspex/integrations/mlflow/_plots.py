"""The study's plots and parameter importances, drawn with matplotlib's object API.

Importances are the share of the trials' score variance that each parameter explains, by a
one-way analysis of variance per parameter, with Kelley's bias correction (epsilon squared):

    ε² = (SS_between - (k - 1) · SS_within / (n - k)) / SS_total, floored at 0,

over the ``n`` completed trials, grouped by the ``k`` values the parameter took (numeric
parameters are binned by rank into about √n groups). Plain η² = SS_between / SS_total would
credit a parameter with many values and few trials per value with variance that is only
noise (with one trial per value, η² is 1 whatever the parameter does); ε² removes what
``k - 1`` groups explain by chance. The plot shows each parameter's share of the summed ε²
(summing to 1, as Optuna's importances do); the JSON keeps ε², η², the group count and the
trial count. Nothing here needs scikit-learn or SciPy, which ``optuna.importance`` imports
(~70-150 MB resident) for its fANOVA evaluator.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Importances",
    "ParamImportance",
    "draw_history",
    "draw_importances",
    "param_importances",
]


@dataclass(frozen=True)
class ParamImportance:
    """One parameter's importance.

    Attributes:
        name: the parameter.
        groups: the values it took (``k``; numeric values binned by rank).
        trials: completed trials that set it (``n``).
        eta_squared: share of the score variance between its groups (η², biased upward).
        epsilon_squared: η² less what ``k - 1`` groups explain by chance (ε², ≥ 0); ``None``
            when every trial had a value of its own (``n == k``: nothing to compare with).
        share: its part of the summed ε² (the plotted bar); ``None`` when no parameter has
            ε² > 0.
    """

    name: str
    groups: int
    trials: int
    eta_squared: float
    epsilon_squared: float | None
    share: float | None


@dataclass(frozen=True)
class Importances:
    """Every parameter's importance over a study's completed trials, most important first."""

    trials: int
    params: tuple[ParamImportance, ...]

    def to_json(self) -> dict[str, Any]:
        """The values as logged (``plots/param_importances.json``)."""
        return {
            "measure": "epsilon_squared (one-way ANOVA per parameter, bias-corrected)",
            "trials": self.trials,
            "params": [asdict(p) for p in self.params],
        }


def param_importances(
    trials: Sequence[tuple[Mapping[str, Any], float]], numeric: Collection[str] = ()
) -> Importances:
    """Importances from ``(params, score)`` pairs of completed trials; the parameters named
    in ``numeric`` are binned by rank, the others grouped by value (categorical).

    Example:
        >>> runs = [({"x": 0, "y": 0}, 0.1), ({"x": 0, "y": 1}, 0.2), ({"x": 1, "y": 0}, 0.9),
        ...         ({"x": 1, "y": 1}, 0.8)]
        >>> [(p.name, p.share) for p in param_importances(runs).params]
        [('x', 1.0), ('y', 0.0)]

    Raises:
        ValueError: fewer than two trials, or every trial has the same score.
    """
    scores = [score for _, score in trials]
    if len(scores) < 2 or max(scores) == min(scores):
        raise ValueError(
            f"importances need trials with different scores ({len(scores)} completed trial(s)"
            + (", all with the same score)" if len(scores) >= 2 else ")")
        )
    names = sorted({name for params, _ in trials for name in params})
    found = [
        _anova(name, [(p[name], s) for p, s in trials if name in p], name in numeric)
        for name in names
    ]
    total = sum(p.epsilon_squared or 0.0 for p in found)
    ranked = sorted(
        (
            ParamImportance(**{**asdict(p), "share": (p.epsilon_squared or 0.0) / total})
            if total > 0
            else p
            for p in found
        ),
        key=lambda p: (-(p.epsilon_squared or 0.0), -p.eta_squared, p.name),
    )
    return Importances(trials=len(scores), params=tuple(ranked))


def _anova(name: str, values: Sequence[tuple[Any, float]], numeric: bool) -> ParamImportance:
    groups: dict[Hashable, list[float]] = {}
    keys = _bins([v for v, _ in values]) if numeric else [repr(v) for v, _ in values]
    for key, score in zip(keys, (s for _, s in values)):
        groups.setdefault(key, []).append(score)
    n, k = len(values), len(groups)
    mean = sum(s for _, s in values) / n
    ss_total = sum((s - mean) ** 2 for _, s in values)
    ss_between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    if ss_total == 0:  # no score variance among the trials that set this parameter
        return ParamImportance(name, k, n, 0.0, 0.0, None)
    eta = ss_between / ss_total
    epsilon: float | None = None
    if n > k:
        ms_within = (ss_total - ss_between) / (n - k)
        epsilon = max(0.0, (ss_between - (k - 1) * ms_within) / ss_total)
    return ParamImportance(name, k, n, eta, epsilon, None)


def _bins(values: Sequence[float]) -> list[Hashable]:
    """Each numeric value's group: itself when there are no more distinct values than about
    √n groups, else its rank bin (equal-count bins)."""
    bins = max(2, math.isqrt(len(values)))
    if len(set(values)) <= bins:
        return list(values)
    order = sorted(range(len(values)), key=lambda i: values[i])
    keys: list[Hashable] = [0] * len(values)
    for rank, i in enumerate(order):
        keys[i] = rank * bins // len(values)
    return keys


def draw_importances(importances: Importances, path: Path) -> None:
    """A horizontal bar per parameter (its share of the summed ε²), saved as PNG at ``path``.

    Raises:
        ValueError: no parameter explains more of the score variance than chance.
    """
    shown = [p for p in importances.params if p.share is not None]
    if not shown:
        raise ValueError(
            f"no parameter explains more of the score variance than chance over "
            f"{importances.trials} trials (epsilon squared is 0 for each)"
        )
    figure = _figure(height=1.2 + 0.35 * len(shown))
    ax = figure.add_subplot()
    rows = list(reversed(shown))  # the most important on top
    bars = ax.barh([p.name for p in rows], [p.share or 0.0 for p in rows], color="tab:blue")
    labels = [f"{p.share or 0.0:.2f} (ε² {p.epsilon_squared or 0.0:.2f})" for p in rows]
    ax.bar_label(bars, labels=labels, padding=3)
    ax.set_xlim(0, 1.35)
    ax.set_xlabel("importance: share of the summed ε² (score variance explained)")
    ax.set_title(f"Parameter importances ({importances.trials} completed trials)")
    figure.savefig(path, bbox_inches="tight")


def draw_history(trials: Sequence[tuple[int, float]], maximize: bool, path: Path) -> None:
    """Each completed trial's score by trial number, and the best so far, saved at ``path``.

    Raises:
        ValueError: no completed trial.
    """
    if not trials:
        raise ValueError("no completed trial")
    numbers = [n for n, _ in trials]
    scores = [s for _, s in trials]
    best = [max(scores[: i + 1]) if maximize else min(scores[: i + 1]) for i in range(len(scores))]
    figure = _figure(height=4.0)
    ax = figure.add_subplot()
    ax.scatter(numbers, scores, color="tab:blue", label="trial score", zorder=2)
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("score")
    ax.set_title("Optimization history")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    figure.savefig(path, bbox_inches="tight")


def _figure(height: float) -> Any:
    """A figure outside pyplot: no global backend or figure registry is touched, so drawing
    from a worker thread or inside a notebook changes nothing for the user's own plots."""
    from matplotlib.figure import Figure

    return Figure(figsize=(6.4, height), dpi=100, layout="constrained")
