"""The bundled tasks: deterministic, well-formed, split without overlap, files up to date."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dspex.datasets import SimTask, load_task, task_names
from dspex.datasets.generate import main as generate_main
from dspex.datasets.generate import render_task
from dspex.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["arithmetic", "factqa", "tooluse"])
def test_task_is_well_formed(name: str) -> None:
    task = load_task(name)
    assert isinstance(task, SimTask) and task.name == name
    assert 200 <= len(task.examples) <= 500
    questions = [ex.question for ex in task.examples]
    assert len(set(questions)) == len(questions)
    for ex in task.examples:
        assert ex.input_keys == frozenset(task.input_keys) == {"question"}
        assert isinstance(ex.answer, int if task.answer_type == "int" else str)
    assert 10 <= len(task.instruction_pool) <= 20
    hinted = [i for i in task.instruction_pool if task.has_hint(i)]
    assert 2 <= len(hinted) < len(task.instruction_pool) // 2
    assert not task.has_hint("Answer the question.")
    assert not task.has_hint("Given the fields `question`, produce the fields `answer`.")
    assert task.summary_pool


def test_arithmetic_answers_are_right() -> None:
    ex = next(
        e for e in load_task("arithmetic").examples if "buys" in e.question and "more" in e.question
    )
    numbers = [int(w) for w in ex.question.replace("?", "").split() if w.isdigit()]
    assert ex.answer == sum(numbers)


def test_generation_is_deterministic() -> None:
    load_task.cache_clear()
    again = load_task("factqa")
    assert render_task("factqa") == "".join(
        json.dumps(ex.to_dict()) + "\n" for ex in again.examples
    )


@pytest.mark.parametrize("name", task_names())
def test_bundled_files_equal_the_generator(name: str) -> None:
    path = ROOT / "datasets" / f"{name}.jsonl"
    assert path.read_text(encoding="utf-8") == render_task(name), (
        "datasets/ is stale: run `python -m dspex.datasets.generate`"
    )


def test_generate_check_mode(tmp_path: Path) -> None:
    assert generate_main(["--out", str(tmp_path), "--check"]) == 1
    assert generate_main(["--out", str(tmp_path)]) == 0
    assert generate_main(["--out", str(tmp_path), "--check"]) == 0


def test_splits_are_disjoint_and_deterministic() -> None:
    task = load_task("arithmetic")
    train, dev, test = task.split(train=50, dev=100, seed=1)
    assert (len(train), len(dev), len(test)) == (50, 100, len(task.examples) - 150)
    ids = [[ex.question for ex in part] for part in (train, dev, test)]
    assert len(set().union(*map(set, ids))) == len(task.examples)
    assert task.split(train=50, dev=100, seed=1) == (train, dev, test)
    assert task.split(train=50, dev=100, seed=2).train != train
    assert len(task.split(train=10, dev=10, test=5).test) == 5
    with pytest.raises(UserError, match="has 300"):
        task.split(train=200, dev=200)


def test_accuracy_model() -> None:
    task = load_task("arithmetic")
    assert task.accuracy(hint=False, correct_demos=0, reasoning=False) == task.base_accuracy
    more = [task.accuracy(hint=False, correct_demos=k, reasoning=False) for k in range(8)]
    assert more == sorted(more) and more[-1] == more[task.demo_cap]  # capped
    assert task.accuracy(hint=True, correct_demos=9, reasoning=True) == task.max_accuracy
    assert (
        task.with_params(hint_bonus=0.5).accuracy(hint=True, correct_demos=0, reasoning=False)
        == 0.85
    )


def test_unknown_task_and_bad_task() -> None:
    with pytest.raises(UserError, match="bundled tasks are"):
        load_task("nope")
    with pytest.raises(UserError):
        load_task("arithmetic").with_params(examples=())
