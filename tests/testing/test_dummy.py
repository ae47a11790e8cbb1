"""DummyLM: scripted answers in order or by input substring; never invents one."""

from __future__ import annotations

import json

import pytest

from dspex.errors import ScriptExhaustedError, UserError
from dspex.testing import DummyLM

from .prompts import chat_prompt


def test_answers_in_order_in_field_marker_format() -> None:
    lm = DummyLM([{"answer": "4"}, {"reasoning": "2+3", "answer": 5}])
    first = lm.forward(chat_prompt("2+2?")).outputs[0]
    # Fields come out in the order the prompt asks for them, not the dict's order.
    second = lm.forward(chat_prompt("2+3?", reasoning=True)).outputs[0]
    assert first == "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
    assert second == (
        "[[ ## reasoning ## ]]\n2+3\n\n[[ ## answer ## ]]\n5\n\n[[ ## completed ## ]]"
    )
    assert len(lm.requests) == 2
    assert lm.requests[1].messages[-1]["content"].startswith("[[ ## question ## ]]\n2+3?")


def test_raises_when_exhausted_and_says_what_was_asked() -> None:
    lm = DummyLM([{"answer": "4"}])
    lm.forward(chat_prompt("2+2?"))
    with pytest.raises(
        ScriptExhaustedError, match=r"ran out(?s:.*)question=.What is nine times nine\?"
    ):
        lm.forward(chat_prompt("What is nine times nine?"))


def test_mapping_matches_substring_of_last_user_message() -> None:
    lm = DummyLM({"capital of Veloria": {"answer": "Marbeth"}, "2+2": {"answer": "4"}})
    assert "Marbeth" in lm("What is the capital of Veloria?")[0]
    assert "4" in lm("What is 2+2?")[0]
    assert "Marbeth" in lm("Again: the capital of Veloria?")[0]  # mapped answers are reusable
    with pytest.raises(ScriptExhaustedError, match="none of its keys"):
        lm("Who founded Duvuum Systems?")


def test_raw_strings_are_returned_verbatim() -> None:
    lm = DummyLM(["not in the field format at all"])
    assert lm.forward(chat_prompt("2+2?")).outputs == ["not in the field format at all"]


def test_json_mode_answers_a_json_object() -> None:
    lm = DummyLM([{"answer": 4}])
    text = lm.forward(chat_prompt("2+2?"), response_format={"type": "json_object"}).outputs[0]
    assert json.loads(text) == {"answer": 4}


def test_n_choices_consume_one_answer_each() -> None:
    lm = DummyLM([{"answer": "1"}, {"answer": "2"}])
    outputs = lm.forward(chat_prompt("?"), n=2).outputs
    assert ["1" in outputs[0], "2" in outputs[1]] == [True, True]
    assert lm.script.remaining == 0


def test_cache_is_off_by_default_so_each_call_consumes() -> None:
    lm = DummyLM([{"answer": "1"}, {"answer": "2"}])
    assert "1" in lm("same")[0]
    assert "2" in lm("same")[0]
    assert lm.request_count == 2


def test_rejects_bad_scripts() -> None:
    with pytest.raises(UserError):
        DummyLM("just a string")  # type: ignore[arg-type]
    with pytest.raises(UserError):
        DummyLM([42])  # type: ignore[list-item]


def test_copies_share_the_script() -> None:
    lm = DummyLM([{"answer": "1"}, {"answer": "2"}])
    hot = lm.copy(temperature=1.0)
    lm("a")
    assert "2" in hot("b")[0]
    with pytest.raises(ScriptExhaustedError):
        lm("c")
