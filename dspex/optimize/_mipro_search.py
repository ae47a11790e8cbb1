"""MIPROv2's search policy: which validation rows each trial sees, when a full evaluation
runs and of which configuration, and which configuration wins.

The search runs ``num_trials`` minibatch trials. At every ``minibatch_full_eval_steps``
trials, and at the end, it reaches a *checkpoint*: the best configuration by minibatch mean
that has not been fully evaluated yet is scored on every validation row. The winner is the
configuration with the best full score (the program as given, on a tie).

No LM call that cannot change the outcome: a trial whose configuration an earlier trial has
already scored reuses that score (:func:`reusable_trial`), and the last checkpoint's
configuration is not evaluated when, even with every row its trials did not see right, it
would stay below the best full score (:func:`best_possible_score`).

Every decision here depends only on the trials with a lower logical index and on earlier
checkpoints' choices, never on timing: a run resumed after a crash, or shared by several
workers, makes the same choices as one uninterrupted run. ``flows/mipro.py`` runs this
policy against an Optuna study; these are plain functions of values.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspex.optimize._mipro import MiproPlan, config_key, minibatch_indices

__all__ = [
    "FullEvaluation",
    "TrialOutcome",
    "best_configuration",
    "best_possible_score",
    "best_unseen",
    "candidate_rows",
    "checkpoints",
    "default_config",
    "due_full_evaluations",
    "finished_prefix",
    "parse_config_key",
    "reusable_trial",
    "search_space",
    "trial_rows",
    "validation_rows",
]


@dataclass(frozen=True)
class TrialOutcome:
    """A finished minibatch trial: its slot, configuration and score (``None``: failed);
    its per-example scores (validation row → score), and the earlier trial of the same
    configuration whose score it reused instead of an evaluation, if it did."""

    index: int
    config: Mapping[str, int]
    score: float | None
    error: str | None = None
    row_scores: Mapping[int, float] = field(default_factory=dict)
    reused_from: int | None = None


@dataclass(frozen=True)
class FullEvaluation:
    """A full evaluation due at ``checkpoint``; ``config`` is ``None`` when every
    configuration tried so far has been evaluated already (the checkpoint is reached with
    nothing to run)."""

    checkpoint: int
    config: dict[str, int] | None


def default_config(predictors: Iterable[str]) -> dict[str, int]:
    """The program as given: every predictor's original instruction and first demo set."""
    return {f"{name}.{kind}": 0 for name in predictors for kind in ("instruction", "demos")}


def search_space(
    predictors: Iterable[str], instructions: Mapping[str, Sequence[str]], n_demosets: int
) -> dict[str, int]:
    """The search's variables (``<predictor>.instruction``, ``<predictor>.demos``), each with
    its number of choices, in the order the sampler draws them."""
    sizes: dict[str, int] = {}
    for name in predictors:
        sizes[f"{name}.instruction"] = len(instructions[name])
        sizes[f"{name}.demos"] = n_demosets
    return sizes


def parse_config_key(key: str) -> dict[str, int]:
    """The configuration a :func:`~dspex.optimize._mipro.config_key` names."""
    return {k: int(v) for k, v in (part.split("=") for part in key.split(","))}


def validation_rows(n_val: int, plan: MiproPlan) -> list[int]:
    """The validation rows the search scores on: all, or a seeded sample of ``val_size``."""
    rows = list(range(n_val))
    if plan.val_size is not None and n_val > plan.val_size:
        rows = sorted(random.Random(plan.seed).sample(rows, plan.val_size))
    return rows


def trial_rows(rows: Sequence[int], plan: MiproPlan, index: int) -> list[int]:
    """The validation rows of trial ``index``'s minibatch, drawn from ``rows``."""
    return [rows[r] for r in minibatch_indices(len(rows), plan.minibatch_size, plan.seed, index)]


def checkpoints(plan: MiproPlan) -> list[int]:
    """Trial counts at which a full evaluation runs: every ``minibatch_full_eval_steps``
    trials, and after the last."""
    steps = max(1, plan.minibatch_full_eval_steps)
    return [*range(steps, plan.num_trials, steps), plan.num_trials]


def finished_prefix(indices: Collection[int]) -> int:
    """How many trials, from index 0 on, have finished without a gap."""
    n = 0
    while n in indices:
        n += 1
    return n


def best_unseen(
    trials: Mapping[int, TrialOutcome], below: int, seen: Collection[str]
) -> dict[str, int] | None:
    """Among trials with index < ``below``, the configuration with the best minibatch mean
    that is not in ``seen`` (ties: the smallest key)."""
    scores: dict[str, list[float]] = {}
    configs: dict[str, dict[str, int]] = {}
    for index, t in trials.items():
        if index >= below or t.score is None:
            continue
        key = config_key(t.config)
        scores.setdefault(key, []).append(t.score)
        configs[key] = dict(t.config)
    ranked = sorted(scores, key=lambda k: (-sum(scores[k]) / len(scores[k]), k))
    return next((configs[k] for k in ranked if k not in seen), None)


def due_full_evaluations(
    plan: MiproPlan,
    trials: Mapping[int, TrialOutcome],
    reached: Mapping[int, str],
    started: Mapping[int, str],
    default: Mapping[str, int],
    full: Mapping[str, float | None] | None = None,
    n_rows: int = 0,
) -> list[FullEvaluation]:
    """The full evaluations to start now, in checkpoint order.

    ``reached``: checkpoint → configuration key stored for it; ``started``: the same for
    evaluations running now. Checkpoint ``c`` is due once trials 0..c-1 have all finished;
    it looks only at those trials and at the configurations of earlier checkpoints (the
    program as given counts as evaluated), so a resumed run makes the same choices.

    The last checkpoint is due once every earlier full evaluation is scored too (``full``:
    configuration key → full score, over ``n_rows`` validation rows). Its configuration is
    not evaluated when it cannot win: even if every row its trials have not scored were
    right, its full score would stay below the best one (see :func:`best_possible_score`).
    Nothing after the last checkpoint could use that evaluation.
    """
    seen = {config_key(default)}
    done = finished_prefix(trials.keys())
    due: list[FullEvaluation] = []
    for c in checkpoints(plan):
        if c in reached or c in started:
            seen.add(reached[c] if c in reached else started[c])
            continue
        if c > done:
            break
        last = c == plan.num_trials and full is not None
        if last and started:
            break  # decided once every earlier full score is in: the same on a resume
        config = best_unseen(trials, c, seen)
        if last and config is not None and full is not None:
            scores = [v for v in full.values() if v is not None]
            bound = best_possible_score(trials, c, config, n_rows)
            if scores and bound is not None and bound < max(scores):
                config = None  # it cannot win: reached with nothing to run
        due.append(FullEvaluation(checkpoint=c, config=config))
        if config is not None:
            seen.add(config_key(config))
    return due


def best_possible_score(
    trials: Mapping[int, TrialOutcome], below: int, config: Mapping[str, int], n_rows: int
) -> float | None:
    """The highest full score (percent of ``n_rows``) ``config`` could reach, given the
    per-example scores its trials with index < ``below`` have already shown: those rows
    would score the same in a full evaluation (their answers come back from the LM
    cache), every other row at most 1 (or the highest row score seen, if above 1).
    ``None`` when nothing is known.

    Example:
        >>> t = TrialOutcome(0, {"p.instruction": 1}, 50.0, row_scores={0: 1.0, 1: 0.0})
        >>> best_possible_score({0: t}, 1, {"p.instruction": 1}, 4)
        75.0
    """
    key = config_key(config)
    known: dict[int, float] = {}
    for index, t in sorted(trials.items()):
        if index < below and t.score is not None and config_key(t.config) == key:
            for row, score in t.row_scores.items():
                known.setdefault(row, score)
    if not known or n_rows <= 0:
        return None
    cap = max(1.0, *known.values())
    return 100.0 * (sum(known.values()) + cap * max(0, n_rows - len(known))) / n_rows


def reusable_trial(
    trials: Mapping[int, TrialOutcome], index: int, config: Mapping[str, int]
) -> TrialOutcome | None:
    """The earliest finished, scored trial before ``index`` with the same configuration
    (one that did not itself reuse another's score): trial ``index`` reuses its score
    instead of evaluating the configuration again.

    Example:
        >>> t = TrialOutcome(0, {"p.instruction": 1}, 80.0)
        >>> reusable_trial({0: t}, 3, {"p.instruction": 1}).index
        0
    """
    key = config_key(config)
    for i, t in sorted(trials.items()):
        if i >= index:
            break
        if t.score is not None and t.reused_from is None and config_key(t.config) == key:
            return t
    return None


def best_configuration(full: Mapping[str, float | None], default: Mapping[str, int]) -> str:
    """The key of the configuration with the best full score; the program as given wins a
    tie, and is the answer when nothing was scored."""
    default_key = config_key(default)
    scored = {k: v for k, v in full.items() if v is not None}
    if not scored:
        return default_key
    return max(scored, key=lambda k: (scored[k], k == default_key))


def candidate_rows(
    trials: Mapping[int, TrialOutcome], full: Mapping[str, float | None]
) -> list[dict[str, Any]]:
    """The candidate table: every trial (minibatch score), then every full evaluation."""
    rows: list[dict[str, Any]] = [
        {
            "id": f"trial-{index}",
            "kind": "minibatch",
            "score": t.score,
            "config": config_key(t.config),
            "error": t.error,
            **({"reused_from": f"trial-{t.reused_from}"} if t.reused_from is not None else {}),
        }
        for index, t in sorted(trials.items())
    ]
    rows += [
        {"id": f"full:{key}", "kind": "full", "score": score, "config": key}
        for key, score in full.items()
    ]
    return rows
