"""SimulatedLM: deterministic, and its accuracy responds to the prompt like a real model's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dspex.datasets import load_task
from dspex.primitives import Example
from dspex.testing import SimulatedLM

from .prompts import chat_prompt, parse_answer, system_message

ARITH = load_task("arithmetic")
TRAIN, DEV, _ = ARITH.split(train=40, dev=200, seed=0)
HINTED = next(i for i in ARITH.instruction_pool if ARITH.has_hint(i))
PLAIN = "Answer the question."


def accuracy(lm: SimulatedLM, dev: list[Example], **prompt_kwargs: Any) -> float:
    right = 0
    for ex in dev:
        text = lm.forward(chat_prompt(ex.question, **prompt_kwargs)).outputs[0]
        right += parse_answer(text) == str(ex.answer)
    return right / len(dev)


@pytest.fixture(scope="module")
def lm() -> SimulatedLM:
    return SimulatedLM("arithmetic", cache=False)


def test_same_prompt_same_answer(lm: SimulatedLM) -> None:
    messages = chat_prompt(DEV[0].question, reasoning=True)
    assert lm.forward(messages).outputs == lm.forward(messages).outputs
    assert lm.request_count >= 2


def test_same_answers_in_another_process(lm: SimulatedLM) -> None:
    questions = [ex.question for ex in DEV[:8]]
    here = [lm.forward(chat_prompt(q, reasoning=True)).outputs[0] for q in questions]
    code = (
        "import json, sys\n"
        "from dspex.testing import SimulatedLM\n"
        "from tests.testing.prompts import chat_prompt\n"
        "lm = SimulatedLM('arithmetic', cache=False)\n"
        "qs = json.loads(sys.argv[1])\n"
        "print(json.dumps([lm.forward(chat_prompt(q, reasoning=True)).outputs[0] for q in qs]))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(questions)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=root,
        timeout=60,
    )
    assert json.loads(out.stdout) == here


def test_accuracy_rises_with_hint_demos_and_reasoning(lm: SimulatedLM) -> None:
    good_demos = [(ex.question, ex.answer) for ex in TRAIN[:4]]
    base = accuracy(lm, DEV, instruction=PLAIN)
    hint = accuracy(lm, DEV, instruction=HINTED)
    demos = accuracy(lm, DEV, instruction=PLAIN, demos=good_demos)
    reasoning = accuracy(lm, DEV, instruction=PLAIN, reasoning=True)
    everything = accuracy(lm, DEV, instruction=HINTED, demos=good_demos, reasoning=True)
    assert 0.2 < base < 0.5  # around base_accuracy=0.35
    assert hint > base + 0.12
    assert demos > base + 0.1
    assert reasoning > base + 0.05
    assert everything > 0.85 > max(hint, demos, reasoning)


def test_only_correct_demos_help(lm: SimulatedLM) -> None:
    right = [(ex.question, ex.answer) for ex in TRAIN[:4]]
    wrong = [(ex.question, ex.answer + 1) for ex in TRAIN[:4]]
    unknown = [(f"Unrelated question {i}?", i) for i in range(4)]
    with_right = accuracy(lm, DEV, demos=right)
    assert with_right > accuracy(lm, DEV, demos=unknown) + 0.1
    assert with_right > accuracy(lm, DEV, demos=wrong) + 0.15


def test_wrong_answers_are_plausible() -> None:
    arith = SimulatedLM("arithmetic", cache=False)
    factqa = SimulatedLM("factqa", cache=False)
    for ex in DEV[:60]:
        got = parse_answer(arith.forward(chat_prompt(ex.question)).outputs[0])
        assert got is not None and abs(int(got) - ex.answer) <= 10
    golds_by_relation: dict[str, set[str]] = {}
    for ex in factqa.task.examples:
        golds_by_relation.setdefault(ex.relation, set()).add(ex.answer)
    wrong = 0
    for ex in factqa.task.examples[:60]:
        got = parse_answer(factqa.forward(chat_prompt(ex.question, answer_type="str")).outputs[0])
        assert got in golds_by_relation[ex.relation]  # wrong answers are the same kind of entity
        wrong += got != ex.answer
    assert wrong > 10


def test_unknown_question_gets_a_plausible_answer(lm: SimulatedLM) -> None:
    text = lm.forward(chat_prompt("A question no dataset has?", reasoning=True)).outputs[0]
    answer = parse_answer(text)
    assert answer is not None and answer.isdigit()


def test_sampling_varies_only_with_temperature(lm: SimulatedLM) -> None:
    def answers(**kwargs: Any) -> list[str | None]:
        return [
            parse_answer(lm.forward(chat_prompt(ex.question), rollout_id=r, **kwargs).outputs[0])
            for ex in DEV[:20]
            for r in (1, 2, 3)
        ]

    cold = answers()
    assert cold == answers()
    assert all(len(set(cold[i : i + 3])) == 1 for i in range(0, 60, 3))
    hot = answers(temperature=1.0)
    assert any(len(set(hot[i : i + 3])) > 1 for i in range(0, 60, 3))


def _fields_prompt(outputs: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [system_message(PLAIN, outputs), {"role": "user", "content": "[[ ## question ## ]]\nx"}]


def test_instruction_and_summary_fields_come_from_the_pools(lm: SimulatedLM) -> None:
    text = lm.forward(_fields_prompt([("proposed_instruction", "str", "")])).outputs[0]
    assert parse_answer(text.replace("proposed_instruction", "answer")) in ARITH.instruction_pool
    text = lm.forward(_fields_prompt([("dataset_summary", "str", "")])).outputs[0]
    assert parse_answer(text.replace("dataset_summary", "answer")) in ARITH.summary_pool


def test_other_fields_get_type_appropriate_values(lm: SimulatedLM) -> None:
    outputs = [
        ("confidence", "float", ""),
        ("ok", "bool", ""),
        ("label", "Literal['yes', 'no']", ""),
        ("tags", "list[str]", ""),
        ("answer", "int", ""),
    ]
    text = lm.forward(_fields_prompt(outputs), response_format={"type": "json_object"}).outputs[0]
    values = json.loads(text)
    assert list(values) == ["confidence", "ok", "label", "tags", "answer"]
    assert isinstance(values["confidence"], float) and isinstance(values["ok"], bool)
    assert values["label"] in ("yes", "no") and isinstance(values["tags"], list)
    assert isinstance(values["answer"], int)


def test_counts_requests_and_tokens() -> None:
    lm = SimulatedLM("factqa", cache=False)
    lm.forward(chat_prompt("Who?"), n=3)
    lm.forward(chat_prompt("Who?"))
    prompt_tokens, completion_tokens = lm.token_usage
    assert lm.request_count == 2
    assert prompt_tokens > 50 and completion_tokens > 0


@pytest.mark.parametrize(
    ("make", "model"),
    [
        (lambda: SimulatedLM("arithmetic"), "dspex-sim/arithmetic"),
        (lambda: SimulatedLM("arithmetic", seed=3), "dspex-sim/arithmetic-s3"),
    ],
)
def test_model_names(make: Callable[[], SimulatedLM], model: str) -> None:
    assert make().model == model


def test_changed_task_gets_its_own_model_name_and_accuracy() -> None:
    easy_task = ARITH.with_params(base_accuracy=0.9)
    easy = SimulatedLM(easy_task, cache=False)
    assert easy.model.startswith("dspex-sim/arithmetic-") and easy.model != "dspex-sim/arithmetic"
    assert accuracy(easy, DEV[:100]) > 0.8


def test_a_demo_of_the_same_question_is_copied(lm: SimulatedLM) -> None:
    for ex in DEV[:10]:
        text = lm.forward(chat_prompt(ex.question, demos=[(ex.question, ex.answer + 1)])).outputs[0]
        assert parse_answer(text) == str(ex.answer + 1)
