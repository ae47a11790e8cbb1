"""The study's plots (SVG, drawn here) and parameter importances.

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
from itertools import accumulate
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from dspex.primitives._program_file import write_atomic

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
    """A horizontal bar per parameter (its share of the summed ε²), saved as SVG at ``path``.

    Raises:
        ValueError: no parameter explains more of the score variance than chance.
    """
    shown = [p for p in importances.params if p.share is not None]
    if not shown:
        raise ValueError(
            f"no parameter explains more of the score variance than chance over "
            f"{importances.trials} trials (epsilon squared is 0 for each)"
        )
    label_w = 40 + 7 * max(len(p.name) for p in shown)  # ~7 px per character at 12 px
    plot_w, bar_h = 360.0, 24.0
    width, height = label_w + plot_w + 120, 70 + bar_h * len(shown) + 50
    top = 50.0
    svg = _Svg(width, height)
    svg.text(
        width / 2,
        24,
        f"Parameter importances ({importances.trials} completed trials)",
        anchor="middle",
        size=15,
    )
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + tick * plot_w
        svg.line(x, top, x, top + bar_h * len(shown), stroke="#dddddd")
        svg.text(x, top + bar_h * len(shown) + 16, f"{tick:g}", anchor="middle")
    for i, p in enumerate(shown):  # the most important on top
        y = top + i * bar_h
        share = p.share or 0.0
        svg.rect(label_w, y + 4, share * plot_w, bar_h - 8, fill=_BLUE)
        svg.text(label_w - 6, y + bar_h / 2 + 4, p.name, anchor="end")
        svg.text(
            label_w + share * plot_w + 4,
            y + bar_h / 2 + 4,
            f"{share:.2f} (ε² {p.epsilon_squared or 0.0:.2f})",
        )
    svg.text(
        label_w + plot_w / 2,
        height - 12,
        "importance: share of the summed ε² (score variance explained)",
        anchor="middle",
    )
    svg.save(path)


def draw_history(trials: Sequence[tuple[int, float]], maximize: bool, path: Path) -> None:
    """Each completed trial's score by trial number, and the best so far, saved as SVG at
    ``path``.

    Raises:
        ValueError: no completed trial.
    """
    if not trials:
        raise ValueError("no completed trial")
    trials = sorted(trials)
    numbers = [n for n, _ in trials]
    scores = [s for _, s in trials]
    best = list(accumulate(scores, max if maximize else min))
    left, top, plot_w, plot_h = 60.0, 44.0, 480.0, 260.0
    svg = _Svg(left + plot_w + 30, top + plot_h + 56)
    svg.text(left + plot_w / 2, 24, "Optimization history", anchor="middle", size=15)
    x0, x1 = _span(numbers)
    y0, y1 = _span(scores)

    def xy(n: float, s: float) -> tuple[float, float]:
        return left + (n - x0) / (x1 - x0) * plot_w, top + plot_h - (s - y0) / (y1 - y0) * plot_h

    for tick in _ticks(y0, y1):
        _, y = xy(x0, tick)
        svg.line(left, y, left + plot_w, y, stroke="#e5e5e5")
        svg.text(left - 6, y + 4, f"{tick:g}", anchor="end")
    for tick in _ticks(max(x0, 0.0), x1, integer=True):  # trial numbers start at 0
        x, _ = xy(tick, y0)
        svg.text(x, top + plot_h + 16, f"{tick:g}", anchor="middle")
    svg.line(left, top + plot_h, left + plot_w, top + plot_h, stroke="#333333")
    svg.line(left, top, left, top + plot_h, stroke="#333333")
    steps: list[tuple[float, float]] = []
    for i, (n, b) in enumerate(zip(numbers, best)):
        if i:
            steps.append(xy(n, best[i - 1]))
        steps.append(xy(n, b))
    svg.polyline(steps, stroke=_RED)
    for n, s in zip(numbers, scores):
        svg.circle(*xy(n, s), r=4, fill=_BLUE)
    svg.text(left + plot_w / 2, top + plot_h + 38, "trial", anchor="middle")
    svg.text(16, top + plot_h / 2, "score", anchor="middle", rotate=True)
    svg.circle(left + plot_w - 120, top + 12, r=4, fill=_BLUE)
    svg.text(left + plot_w - 110, top + 16, "trial score")
    svg.line(left + plot_w - 126, top + 30, left + plot_w - 114, top + 30, stroke=_RED)
    svg.text(left + plot_w - 110, top + 34, "best so far")
    svg.save(path)


_BLUE, _RED = "#1f77b4", "#d62728"


def _span(values: Sequence[float]) -> tuple[float, float]:
    """The axis range: the values' range padded by 5%, or ±1 around a single value (or
    values equal but for rounding error).

    Raises:
        ValueError: a value is not finite.
    """
    lo, hi = min(values), max(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"cannot plot a score that is not finite ({lo}, {hi})")
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        return lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, integer: bool = False) -> list[float]:
    """About five round tick values inside ``[lo, hi]`` (whole numbers with ``integer``).

    Example:
        >>> _ticks(-0.5, 10.5, integer=True)
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        >>> _ticks(0.1, 0.3)
        [0.1, 0.15, 0.2, 0.25, 0.3]
    """
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / 5
    step = 10 ** math.floor(math.log10(raw))
    step = next(m * step for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    if integer:
        step = max(1.0, float(round(step)))
    first = math.ceil(lo / step - 1e-9) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    ticks = (round(first + i * step, 10) for i in range(max(0, count)))
    return [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]


class _Svg:
    """A minimal SVG document: what the two plots draw, escaped text, written atomically.
    No plotting library: matplotlib's import and renderer cost ~1 s of CPU and ~30 MB of
    peak memory in the compiling process, at the end of every MIPROv2 run. MLflow's UI
    shows ``.svg`` artifacts as images."""

    def __init__(self, width: float, height: float) -> None:
        self.width, self.height = width, height
        self.parts: list[str] = [
            f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="white"/>'
        ]

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str) -> None:
        self.parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'
        )

    def rect(self, x: float, y: float, w: float, h: float, fill: str) -> None:
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}"/>'
        )

    def circle(self, x: float, y: float, r: float, fill: str) -> None:
        self.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:g}" fill="{fill}"/>')

    def polyline(self, points: Sequence[tuple[float, float]], stroke: str) -> None:
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{stroke}" stroke-width="2"/>'
        )

    def text(
        self,
        x: float,
        y: float,
        body: str,
        anchor: str = "start",
        size: int = 12,
        rotate: bool = False,
    ) -> None:
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{turn}>'
            f"{escape(body)}</text>"
        )

    def save(self, path: Path) -> None:
        body = "\n".join(self.parts)
        doc = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width:.0f}" '
            f'height="{self.height:.0f}" viewBox="0 0 {self.width:.0f} {self.height:.0f}" '
            f'font-family="DejaVu Sans, Arial, sans-serif">\n{body}\n</svg>\n'
        )
        write_atomic(path, doc)
