"""MIPROv2's search policy: checkpoints, full-evaluation choices, the winner, the table."""

from __future__ import annotations

from dspex.optimize._mipro import MiproPlan, config_key
from dspex.optimize._mipro_search import (
    FullEvaluation,
    TrialOutcome,
    best_configuration,
    best_possible_score,
    best_unseen,
    candidate_rows,
    checkpoints,
    default_config,
    due_full_evaluations,
    finished_prefix,
    parse_config_key,
    reusable_trial,
    search_space,
    trial_rows,
    validation_rows,
)

DEFAULT = default_config(["qa"])  # {"qa.demos": 0, "qa.instruction": 0}


def _plan(**overrides: int | None) -> MiproPlan:
    values: dict[str, int | None] = {
        "num_candidates": 4,
        "num_trials": 10,
        "minibatch_size": 5,
        "minibatch_full_eval_steps": 4,
        "val_size": None,
        "trial_batch_size": 2,
        "seed": 0,
    }
    values.update(overrides)
    return MiproPlan(**values)  # type: ignore[arg-type]


def _config(instruction: int, demos: int) -> dict[str, int]:
    return {"qa.instruction": instruction, "qa.demos": demos}


def _trial(index: int, instruction: int, demos: int, score: float | None) -> TrialOutcome:
    return TrialOutcome(index=index, config=_config(instruction, demos), score=score)


def test_checkpoints_every_steps_trials_and_at_the_end() -> None:
    assert checkpoints(_plan()) == [4, 8, 10]
    assert checkpoints(_plan(num_trials=8)) == [4, 8]
    assert checkpoints(_plan(minibatch_full_eval_steps=0)) == list(range(1, 11))


def test_finished_prefix_stops_at_the_first_gap() -> None:
    assert finished_prefix({0, 1, 2, 4}) == 3
    assert finished_prefix({1, 2}) == 0
    assert finished_prefix(set()) == 0


def test_best_unseen_ranks_by_minibatch_mean_below_the_checkpoint() -> None:
    trials = {
        0: _trial(0, 1, 1, 50.0),
        1: _trial(1, 2, 2, 80.0),
        2: _trial(2, 1, 1, 70.0),  # (1, 1): mean 60
        3: _trial(3, 3, 3, None),  # failed: never chosen
        4: _trial(4, 3, 0, 99.0),  # at or past the checkpoint: not looked at
    }
    assert best_unseen(trials, 4, set()) == _config(2, 2)
    assert best_unseen(trials, 4, {config_key(_config(2, 2))}) == _config(1, 1)
    seen = {config_key(_config(2, 2)), config_key(_config(1, 1))}
    assert best_unseen(trials, 4, seen) is None


def test_best_unseen_breaks_ties_by_key() -> None:
    trials = {0: _trial(0, 2, 0, 60.0), 1: _trial(1, 1, 0, 60.0)}
    assert best_unseen(trials, 2, set()) == _config(1, 0)


def test_a_checkpoint_is_due_only_once_every_trial_before_it_finished() -> None:
    plan = _plan()
    trials = {i: _trial(i, i % 3, 1, float(i)) for i in (0, 1, 2, 5)}
    assert due_full_evaluations(plan, trials, {}, {}, DEFAULT) == []
    trials[3] = _trial(3, 3, 2, 90.0)
    assert due_full_evaluations(plan, trials, {}, {}, DEFAULT) == [
        FullEvaluation(checkpoint=4, config=_config(3, 2))
    ]


def test_later_checkpoints_skip_configurations_evaluated_before() -> None:
    plan = _plan()
    trials = {i: _trial(i, 1 if i < 8 else 2, 1, 50.0 if i < 8 else 40.0) for i in range(10)}
    first = config_key(_config(1, 1))
    # Checkpoint 4 reached earlier (stored), 8 running: 10 takes the next best.
    due = due_full_evaluations(plan, trials, {4: first}, {8: ""}, DEFAULT)
    assert due == [FullEvaluation(checkpoint=10, config=_config(2, 1))]
    # All at once, from scratch: the same choices, in checkpoint order.
    assert due_full_evaluations(plan, trials, {}, {}, DEFAULT) == [
        FullEvaluation(checkpoint=4, config=_config(1, 1)),
        FullEvaluation(checkpoint=8, config=None),  # nothing new below 8
        FullEvaluation(checkpoint=10, config=_config(2, 1)),
    ]


def test_the_program_as_given_is_never_chosen_for_a_full_evaluation() -> None:
    trials = {i: _trial(i, 0, 0, 100.0) for i in range(4)}  # the default config, scored high
    assert due_full_evaluations(_plan(), trials, {}, {}, DEFAULT) == [
        FullEvaluation(checkpoint=4, config=None)
    ]


def test_a_resumed_search_makes_the_same_choices() -> None:
    """Checkpoint 4's choice does not change when later trials (a resumed run's) finish."""
    plan = _plan()
    early = {i: _trial(i, i, 1, 10.0 * i) for i in range(4)}
    (at_four,) = due_full_evaluations(plan, early, {}, {}, DEFAULT)
    later = {**early, **{i: _trial(i, 9, 9, 100.0) for i in range(4, 8)}}
    again = due_full_evaluations(plan, later, {}, {}, DEFAULT)
    assert again[0] == at_four


def test_best_configuration_prefers_the_program_as_given_on_a_tie() -> None:
    default_key = config_key(DEFAULT)
    other = config_key(_config(2, 1))
    assert best_configuration({other: 70.0, default_key: 70.0}, DEFAULT) == default_key
    assert best_configuration({other: 71.0, default_key: 70.0}, DEFAULT) == other
    assert best_configuration({other: None}, DEFAULT) == default_key
    assert best_configuration({}, DEFAULT) == default_key


def test_config_keys_round_trip() -> None:
    config = {"b.instruction": 3, "a.demos": 12}
    assert parse_config_key(config_key(config)) == config


def test_search_space_lists_instruction_then_demos_per_predictor() -> None:
    sizes = search_space(["a", "b"], {"a": ["x", "y"], "b": ["z"]}, 4)
    assert list(sizes.items()) == [
        ("a.instruction", 2),
        ("a.demos", 4),
        ("b.instruction", 1),
        ("b.demos", 4),
    ]


def test_validation_and_trial_rows_are_seeded() -> None:
    plan = _plan(val_size=20, seed=3)
    rows = validation_rows(50, plan)
    assert len(rows) == 20 and rows == sorted(rows) and rows == validation_rows(50, plan)
    assert validation_rows(10, plan) == list(range(10))  # smaller than val_size: all of it
    batch = trial_rows(rows, plan, 7)
    assert len(batch) == 5 and set(batch) <= set(rows)
    assert batch == trial_rows(rows, plan, 7)
    assert batch != trial_rows(rows, plan, 8)


def test_candidate_rows_list_trials_by_index_then_full_evaluations() -> None:
    failed = TrialOutcome(index=0, config=_config(1, 0), score=None, error="boom")
    trials = {1: _trial(1, 2, 1, 60.0), 0: failed}
    key = config_key(_config(2, 1))
    assert candidate_rows(trials, {key: 75.0}) == [
        {
            "id": "trial-0",
            "kind": "minibatch",
            "score": None,
            "config": "qa.demos=0,qa.instruction=1",
            "error": "boom",
        },
        {"id": "trial-1", "kind": "minibatch", "score": 60.0, "config": key, "error": None},
        {"id": f"full:{key}", "kind": "full", "score": 75.0, "config": key},
    ]


def test_a_trial_repeating_a_scored_configuration_reuses_its_score() -> None:
    trials = {0: _trial(0, 1, 2, 80.0), 1: _trial(1, 2, 2, None), 2: _trial(2, 2, 2, 60.0)}
    assert reusable_trial(trials, 5, _config(1, 2)) == trials[0]
    assert reusable_trial(trials, 5, _config(2, 2)) == trials[2]  # the failed one is skipped
    assert reusable_trial(trials, 0, _config(1, 2)) is None  # only earlier trials count
    assert reusable_trial(trials, 5, _config(3, 3)) is None
    reused = TrialOutcome(index=3, config=_config(3, 3), score=50.0, reused_from=9)
    assert reusable_trial({3: reused}, 5, _config(3, 3)) is None  # never a reuse of a reuse


def test_the_last_full_evaluation_is_skipped_when_it_cannot_win() -> None:
    plan = _plan(num_trials=4, minibatch_full_eval_steps=4)
    rows = {0: 1.0, 1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0}  # 2 of 5 wrong: at most 8 of 10 right
    trials = {
        i: TrialOutcome(i, _config(1, 1), 60.0, row_scores=rows) if i == 0 else _trial(i, 0, 1, 0)
        for i in range(4)
    }
    assert best_possible_score(trials, 4, _config(1, 1), 10) == 80.0
    full = {config_key(DEFAULT): 85.0}
    due = due_full_evaluations(plan, trials, {}, {}, DEFAULT, full, 10)
    assert due == [FullEvaluation(checkpoint=4, config=None)]
    # It could tie or beat a lower best: it runs.
    due = due_full_evaluations(plan, trials, {}, {}, DEFAULT, {config_key(DEFAULT): 80.0}, 10)
    assert due == [FullEvaluation(checkpoint=4, config=_config(1, 1))]
    # Not before every earlier full evaluation is scored: the choice must not depend on timing.
    assert due_full_evaluations(plan, trials, {}, {0: config_key(DEFAULT)}, DEFAULT, {}, 10) == []
