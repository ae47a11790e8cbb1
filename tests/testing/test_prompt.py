"""Reading prompts in the field-marker format back into their parts."""

from __future__ import annotations

from dspex.testing import format_answer, parse_prompt
from dspex.testing._prompt import parse_sections

from .prompts import chat_prompt


def test_parses_instruction_fields_demos_and_inputs() -> None:
    messages = chat_prompt(
        "How many?",
        instruction="Track each quantity.\nThen answer.",
        reasoning=True,
        demos=[("Q1", 1), ("Q2", 2)],
    )
    p = parse_prompt(messages)
    assert p.instruction == "Track each quantity.\nThen answer."
    assert [(f.name, f.type) for f in p.output_fields] == [("reasoning", "str"), ("answer", "int")]
    assert [dict(d.inputs) for d in p.demos] == [{"question": "Q1"}, {"question": "Q2"}]
    assert [d.outputs["answer"] for d in p.demos] == ["1", "2"]
    # The trailing "Respond with ..." paragraph is not part of the question.
    assert dict(p.inputs) == {"question": "How many?"}
    assert not p.json_mode


def test_json_mode_from_response_format_and_json_demos() -> None:
    messages = [
        {"role": "system", "content": "Your output fields are:\n1. `answer` (int): x"},
        {"role": "user", "content": "[[ ## question ## ]]\nQ1"},
        {"role": "assistant", "content": '{"answer": 3}'},
        {"role": "user", "content": [{"type": "text", "text": "[[ ## question ## ]]\nQ2"}]},
    ]
    p = parse_prompt(messages, {"response_format": {"type": "json_object"}})
    assert p.json_mode
    assert p.demos[0].outputs == {"answer": 3}
    assert dict(p.inputs) == {"question": "Q2"}


def test_markers_only_count_at_line_start() -> None:
    text = "[[ ## a ## ]]\nsee `[[ ## b ## ]]` inline\n\n[[ ## completed ## ]]"
    assert parse_sections(text) == {"a": "see `[[ ## b ## ]]` inline"}


def test_format_answer_round_trips() -> None:
    text = format_answer({"reasoning": "r", "answer": 4, "ok": True}, json_mode=False)
    assert parse_sections(text) == {"reasoning": "r", "answer": "4", "ok": "True"}
    assert format_answer({"answer": 4}, json_mode=True) == '{"answer": 4}'
