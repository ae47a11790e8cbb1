"""The test doubles (``dspex.testing``) read the prompts the adapters write, DSPy's format."""

from __future__ import annotations

import pytest

import dspex
from dspex.testing import DummyLM, parse_prompt


class Quiz(dspex.Signature):
    """Answer the quiz.

    Be brief."""

    question: str = dspex.InputField(desc="The question.")
    history: dspex.History = dspex.InputField()
    answer: int = dspex.OutputField(ge=0)
    sure: bool | None = dspex.OutputField()


DEMOS = [
    dspex.Example(question="1+1?", answer=2, sure=True),
    dspex.Example(question="2+2?", answer=4),
]
HISTORY = dspex.History(messages=[{"question": "0+0?", "answer": 0, "sure": False}])


@pytest.mark.parametrize("adapter", [dspex.ChatAdapter(), dspex.JSONAdapter()])
def test_parse_prompt_reads_adapter_messages(adapter: dspex.Adapter) -> None:
    messages = adapter.format(Quiz, DEMOS, {"question": "3+3?", "history": HISTORY})
    p = parse_prompt(messages)
    assert p.instruction == "Answer the quiz.\n\nBe brief."
    assert [(f.name, f.type) for f in p.output_fields] == [
        ("answer", "int"),
        ("sure", "Union[bool, NoneType]"),
    ]
    # The demos (incomplete, as DSPy counts them: no `history`), then the history turn.
    assert [dict(d.inputs) for d in p.demos] == [
        {"question": "1+1?"},
        {"question": "2+2?"},
        {"question": "0+0?"},
    ]
    assert [str(d.outputs["answer"]) for d in p.demos] == ["2", "4", "0"]
    assert dict(p.inputs) == {"question": "3+3?"}
    assert p.json_mode is isinstance(adapter, dspex.JSONAdapter)


@pytest.mark.parametrize("adapter", [dspex.ChatAdapter(), dspex.JSONAdapter()])
def test_dummy_answers_parse_with_either_adapter(adapter: dspex.Adapter) -> None:
    lm = DummyLM([{"answer": 6, "sure": True}])
    pred = dspex.Predict(Quiz, lm=lm, adapter=adapter)(question="3+3?", history=HISTORY)
    assert (pred.answer, pred.sure) == (6, True)
