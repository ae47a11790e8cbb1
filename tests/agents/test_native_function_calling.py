"""Native function calling: ``ChatAdapter(use_native_function_calling=True)`` sends the tools
as OpenAI ``tools`` and reads the model's ``tool_calls``, round trip over the loopback server
through the OpenAI-compatible transport."""

from __future__ import annotations

import json
from typing import Any

import pytest

import dspex
from dspex.lm import LM, Cache
from dspex.testing import DummyLM, serve

CALLED: list[tuple[str, dict[str, Any]]] = []


def add(a: int, b: int) -> int:
    """Add two integers."""
    CALLED.append(("add", {"a": a, "b": b}))
    return a + b


def capital(country: str) -> str:
    """The capital of a country."""
    return {"France": "Paris"}.get(country, "unknown")


class CallTools(dspex.Signature):
    """Call the tools the question needs."""

    question: str = dspex.InputField()
    tools: list[dspex.Tool] = dspex.InputField()
    calls: dspex.ToolCalls = dspex.OutputField()


TOOLS = [dspex.Tool(add), dspex.Tool(capital)]
ADD_CALL = {"tool_calls": [{"name": "add", "args": {"a": 2, "b": 3}}]}


def _predict(url: str, **lm_kwargs: Any) -> tuple[dspex.Prediction, LM]:
    lm = LM("openai/sim", api_base=url, api_key="sk-local", **lm_kwargs)
    predict = dspex.Predict(CallTools)
    with dspex.context(lm=lm, adapter=dspex.ChatAdapter(use_native_function_calling=True)):
        return predict(question="What is 2 + 3?", tools=TOOLS), lm


def test_round_trip_over_the_loopback_server() -> None:
    CALLED.clear()
    script = DummyLM([ADD_CALL])
    with serve(script) as srv:
        pred, _ = _predict(srv.url, cache=False)
    sent = script.script.requests[0]
    # The provider got the tools in OpenAI's format ...
    assert sent.kwargs["tools"] == [t.format_as_litellm_function_call() for t in TOOLS]
    assert sent.kwargs["tools"][0]["type"] == "function"
    assert sent.kwargs["tools"][0]["function"]["name"] == "add"
    assert sent.kwargs["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    # ... and neither field is in the prompt, as in DSPy.
    prompt = "\n".join(str(m["content"]) for m in sent.messages)
    assert "calls" not in prompt and "[[ ## tools ## ]]" not in prompt
    assert "[[ ## question ## ]]" in prompt
    calls = pred.calls
    assert isinstance(calls, dspex.ToolCalls)
    assert [(c.name, c.args) for c in calls.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert calls.tool_calls[0].id  # the provider's call id is kept
    assert calls.tool_calls[0].execute(functions=TOOLS) == 5
    assert CALLED == [("add", {"a": 2, "b": 3})]


def test_round_trip_through_litellm() -> None:
    script = DummyLM([ADD_CALL])
    with serve(script) as srv:
        pred, _ = _predict(srv.url, cache=False, transport="litellm")
    tools = script.script.requests[0].kwargs["tools"]
    assert [t["function"]["name"] for t in tools] == ["add", "capital"]
    assert [(c.name, c.args) for c in pred.calls.tool_calls] == [("add", {"a": 2, "b": 3})]


def test_dummy_lm_in_process_answers_with_tool_calls() -> None:
    lm = DummyLM([ADD_CALL])
    adapter = dspex.ChatAdapter(use_native_function_calling=True)
    pred = dspex.Predict(CallTools, adapter=adapter, lm=lm)(question="2+3?", tools=TOOLS)
    assert pred.calls.tool_calls[0].execute(functions=TOOLS) == 5


def test_several_calls_and_text_outputs_alongside() -> None:
    class Plan(dspex.Signature):
        question: str = dspex.InputField()
        tools: list[dspex.Tool] = dspex.InputField()
        note: str = dspex.OutputField()
        calls: dspex.ToolCalls = dspex.OutputField()

    answer = {
        "note": "two lookups",
        "tool_calls": [
            {"name": "add", "args": {"a": 1, "b": 1}},
            {"name": "capital", "args": {"country": "France"}},
        ],
    }
    with serve(DummyLM([answer])) as srv:
        lm = LM("openai/sim", api_base=srv.url, api_key="sk-local", cache=False)
        adapter = dspex.ChatAdapter(use_native_function_calling=True)
        pred = dspex.Predict(Plan, adapter=adapter, lm=lm)(question="?", tools=TOOLS)
    assert pred.note == "two lookups"
    assert [c.name for c in pred.calls.tool_calls] == ["add", "capital"]
    assert pred.calls.tool_calls[1].execute(functions=TOOLS) == "Paris"


def test_an_answer_without_tool_calls_leaves_the_field_none() -> None:
    # An empty answer is no answer: the adapter re-asks in JSON once, then reports it.
    with serve(DummyLM([{}, {}])) as srv, pytest.raises(dspex.ParseError):
        _predict(srv.url, cache=False)

    class Plan(dspex.Signature):
        question: str = dspex.InputField()
        tools: list[dspex.Tool] = dspex.InputField()
        note: str = dspex.OutputField()
        calls: dspex.ToolCalls = dspex.OutputField()

    with serve(DummyLM([{"note": "no tool needed"}])) as srv:
        lm = LM("openai/sim", api_base=srv.url, api_key="sk-local", cache=False)
        adapter = dspex.ChatAdapter(use_native_function_calling=True)
        pred = dspex.Predict(Plan, adapter=adapter, lm=lm)(question="?", tools=TOOLS)
    assert (pred.note, pred.calls) == ("no tool needed", None)


def test_tool_calls_are_cached_and_replayed(tmp_path: Any) -> None:
    with serve(DummyLM([ADD_CALL])) as srv:
        cache = Cache(tmp_path / "c1")
        first, _ = _predict(srv.url, cache=cache)
        cache.flush()
        # A fresh cache object over the same directory reads the entry back from disk (JSON).
        again, _ = _predict(srv.url, cache=Cache(tmp_path / "c1"))
        assert srv.request_count == 1
    assert again.calls.model_dump() == first.calls.model_dump()
    assert again.calls.tool_calls[0].args == {"a": 2, "b": 3}


def test_without_native_calling_no_tools_are_sent() -> None:
    text = json.dumps(ADD_CALL)
    script = DummyLM([{"calls": text}])
    with serve(script) as srv:
        lm = LM("openai/sim", api_base=srv.url, api_key="sk-local", cache=False)
        pred = dspex.Predict(CallTools, adapter=dspex.ChatAdapter(), lm=lm)(
            question="What is 2 + 3?", tools=TOOLS
        )
    assert "tools" not in script.script.requests[0].kwargs
    assert pred.calls.tool_calls[0].name == "add"


def test_a_tool_calls_output_without_tools_input_is_a_user_error() -> None:
    sig = dspex.Signature(
        {"q": (str, dspex.InputField()), "calls": (dspex.ToolCalls, dspex.OutputField())}
    )
    lm = DummyLM([ADD_CALL])
    adapter = dspex.ChatAdapter(use_native_function_calling=True)
    with pytest.raises(dspex.UserError, match=r"list\[dspex\.Tool\]"):
        dspex.Predict(sig, adapter=adapter, lm=lm)(q="?")
