"""DSPy's adapter options and calling conventions: fallback, callbacks, call forms, errors."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

import dspex
from dspex.adapters._json import structured_response_format
from dspex.errors import AdapterParseError
from dspex.testing import DummyLM

SIG = dspex.Signature("question -> answer: int")


def test_an_adapter_is_called_as_dspys_is() -> None:
    lm = DummyLM([{"answer": "4"}, {"answer": "5"}])
    outputs = dspex.ChatAdapter()(lm, {}, SIG, [], {"question": "2+2?"})
    assert outputs == [{"answer": 4}]
    assert dspex.JSONAdapter()(lm, {}, SIG, [], {"question": "2+3?"}) == [{"answer": 5}]


async def test_acall_returns_the_outputs_and_acall_with_usage_the_usage_too() -> None:
    lm = DummyLM([{"answer": "4"}, {"answer": "6"}])
    assert await dspex.ChatAdapter().acall(lm, {}, SIG, [], {"question": "?"}) == [{"answer": 4}]
    outputs, usage = await dspex.ChatAdapter().acall_with_usage(lm, {}, SIG, [], {"question": "?"})
    assert outputs == [{"answer": 6}] and usage.calls == 1


def test_without_the_json_fallback_a_parse_failure_raises_at_once() -> None:
    lm = DummyLM(["[[ ## answer ## ]]\nseven", '{"answer": 7}'])
    adapter = dspex.ChatAdapter(use_json_adapter_fallback=False)
    with pytest.raises(AdapterParseError) as info:
        dspex.Predict(SIG, lm=lm, adapter=adapter)(question="3+4?")
    assert lm.request_count == 1
    assert info.value.fallback_raw is None


def test_json_adapter_does_not_reask() -> None:
    lm = DummyLM(["not json", '{"answer": 7}'])
    with pytest.raises(dspex.ParseError):
        dspex.Predict(SIG, lm=lm, adapter=dspex.JSONAdapter())(question="3+4?")
    assert lm.request_count == 1


def test_a_parse_error_is_dspys_adapter_parse_error_and_keeps_its_cause() -> None:
    lm = DummyLM(["[[ ## answer ## ]]\nseven", '{"answer": "eight"}'])
    with pytest.raises(AdapterParseError) as info:
        dspex.Predict(SIG, lm=lm)(question="3+4?")
    err = info.value
    assert isinstance(err, dspex.ParseError)
    assert err.adapter_name == "ChatAdapter" and err.signature is SIG
    assert err.lm_response == err.raw == "[[ ## answer ## ]]\nseven"
    assert err.field == "answer" and "valid integer" in err.reason
    # The chain: the re-ask's parse failure, then pydantic's validation error.
    assert isinstance(err.__cause__, AdapterParseError)
    assert isinstance(err.__cause__.__cause__, pydantic.ValidationError)


def test_parse_raises_adapter_parse_error_with_dspys_arguments() -> None:
    with pytest.raises(AdapterParseError) as info:
        dspex.ChatAdapter().parse(SIG, "[[ ## answer ## ]]\nforty")
    err = info.value
    assert (err.adapter_name, err.signature, err.lm_response) == (
        "ChatAdapter",
        SIG,
        "[[ ## answer ## ]]\nforty",
    )
    assert isinstance(err.__cause__, pydantic.ValidationError)
    # Constructed as DSPy code constructs it.
    own = AdapterParseError("MyAdapter", SIG, "raw", parsed_result={})
    assert "answer" in own.reason and own.parsed_result == {}


def test_adapter_callbacks_see_format_and_parse() -> None:
    events: list[tuple[str, Any]] = []

    class Log(dspex.Callback):
        def on_adapter_format(self, span, adapter, signature, messages):  # type: ignore[no-untyped-def]
            events.append(("format", len(messages)))

        def on_adapter_parse(self, span, adapter, signature, response, outputs, error):  # type: ignore[no-untyped-def]
            events.append(("parse", outputs))

    adapter = dspex.ChatAdapter(callbacks=[Log()])
    dspex.Predict(SIG, lm=DummyLM([{"answer": "4"}]), adapter=adapter)(question="?")
    assert events == [("format", 2), ("parse", [{"answer": 4}])]


def test_json_adapter_asks_for_json_mode_or_a_strict_schema() -> None:
    sig = dspex.Signature("q -> a: int, tags: list[str]")
    assert dspex.JSONAdapter().lm_kwargs(sig) == {"response_format": {"type": "json_object"}}

    class SchemaLM:
        supports_response_schema = True

    fmt = dspex.JSONAdapter().lm_kwargs(sig, SchemaLM())["response_format"]
    assert fmt == structured_response_format(sig)
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["a", "tags"] and schema["additionalProperties"] is False
    assert dspex.JSONAdapter(structured_outputs=True).lm_kwargs(sig)["response_format"] == fmt
    # An open mapping has no strict schema: JSON mode.
    open_sig = dspex.Signature("q -> a: dict[str, int]")
    assert dspex.JSONAdapter(structured_outputs=True).lm_kwargs(open_sig) == {
        "response_format": {"type": "json_object"}
    }

    class NoFormatLM:
        supported_params = ("temperature",)

    assert dspex.JSONAdapter().lm_kwargs(sig, NoFormatLM()) == {}


def test_structured_outputs_reach_the_lm() -> None:
    lm = DummyLM([{"answer": "4"}])
    dspex.Predict(SIG, lm=lm, adapter=dspex.JSONAdapter(structured_outputs=True))(question="?")
    assert lm.requests[0].kwargs["response_format"]["type"] == "json_schema"


def test_history_renders_as_turns_and_accepts_a_plain_mapping() -> None:
    class Chat(dspex.Signature):
        question: str = dspex.InputField()
        history: dspex.History = dspex.InputField()
        answer: str = dspex.OutputField()

    turns = [{"question": "2+2?", "answer": "4"}]
    as_model = dspex.ChatAdapter().format(
        Chat, [], {"question": "3+3?", "history": dspex.History(messages=turns)}
    )
    as_dict = dspex.ChatAdapter().format(
        Chat, [], {"question": "3+3?", "history": {"messages": turns}}
    )
    assert as_model == as_dict
    assert [m["role"] for m in as_model] == ["system", "user", "assistant", "user"]
    assert as_model[2]["content"] == "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]\n"
    assert "history" not in as_model[3]["content"]
    lm = DummyLM([{"answer": "6"}])
    pred = dspex.Predict(Chat, lm=lm)(question="3+3?", history=dspex.History(messages=turns))
    assert pred.answer == "6"
    assert [dict(m) for m in lm.requests[0].messages] == as_model


def test_chain_of_thought_reasoning_has_dspys_placeholder_description() -> None:
    sig = dspex.ChainOfThought("question -> answer").predict.signature
    system = dspex.ChatAdapter().format(sig, [], {"question": "?"})[0]["content"]
    assert "1. `reasoning` (str): \n2. `answer` (str):\n" in system


@pytest.mark.parametrize(
    ("text", "value"),
    [("True", True), ("true", True), ("False", False), ("false", False), ("yes", True)],
)
def test_bool_answers_in_either_spelling(text: str, value: bool) -> None:
    sig = dspex.Signature("claim -> verdict: bool")
    assert dspex.ChatAdapter().parse(sig, f"[[ ## verdict ## ]]\n{text}") == {"verdict": value}
    assert dspex.JSONAdapter().parse(sig, f'{{"verdict": "{text}"}}') == {"verdict": value}


@pytest.mark.parametrize(
    "text",
    [
        'Here is the JSON:\n{"answer": 3}\nThanks!',
        '```json\n{"answer": 3}\n```',
        "{'answer': 3,}",
        '{"answer": 3, "note": {"nested": [1, 2]}}',
        '[[ ## answer ## ]]\n{"answer": 3}',
    ],
)
def test_json_with_text_around_it(text: str) -> None:
    assert dspex.JSONAdapter().parse(SIG, text) == {"answer": 3}
