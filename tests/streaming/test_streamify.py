"""dspex.streamify against the loopback server: field chunks first, the Prediction last."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import dspex
from dspex.streaming import StatusMessage, StreamListener, StreamResponse
from dspex.testing import DummyLM, serve

REASONING = "Two plus two makes four, as everyone knows."
ANSWER = "The answer is 4."


@contextmanager
def served(answers: list[dict[str, Any]], *, cache: bool = False) -> Iterator[dspex.LM]:
    with serve(DummyLM(answers)) as srv:
        yield dspex.LM("openai/dummy", api_base=srv.url, api_key="x", cache=cache)


def collect(stream: Any, **inputs: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [value async for value in stream(**inputs)]

    return asyncio.run(run())


def chunks_of(values: list[Any], field: str) -> list[StreamResponse]:
    return [v for v in values if isinstance(v, StreamResponse) and v.signature_field_name == field]


@pytest.mark.parametrize("adapter", [dspex.ChatAdapter(), dspex.JSONAdapter()], ids=repr)
def test_chain_of_thought_streams_each_field_before_the_prediction(adapter: Any) -> None:
    listeners = [StreamListener("reasoning"), StreamListener("answer")]
    stream = dspex.streamify(dspex.ChainOfThought("question -> answer"), stream_listeners=listeners)
    answers = [{"reasoning": REASONING, "answer": ANSWER}]
    with served(answers) as lm, dspex.context(lm=lm, adapter=adapter):
        values = collect(stream, question="What is 2 + 2?")
    prediction = values[-1]
    assert isinstance(prediction, dspex.Prediction) and prediction.answer == ANSWER
    for field, text in (("reasoning", REASONING), ("answer", ANSWER)):
        pieces = chunks_of(values, field)
        assert len(pieces) > 2, pieces  # word by word, not all at once
        assert "".join(p.chunk for p in pieces) == text  # no framing, no padding
        assert [p.is_last_chunk for p in pieces] == [False] * (len(pieces) - 1) + [True]
        assert {p.predict_name for p in pieces} == {"predict"}
    # The reasoning is complete before the answer starts.
    order = [v.signature_field_name for v in values if isinstance(v, StreamResponse)]
    assert order.index("answer") > max(i for i, f in enumerate(order) if f == "reasoning")


def test_predict_streams_in_sync_code_and_can_leave_out_the_prediction() -> None:
    predict = dspex.Predict("question -> answer")
    stream = dspex.streamify(
        predict,
        stream_listeners=[StreamListener("answer")],
        include_final_prediction_in_output_stream=False,
        async_streaming=False,
    )
    with served([{"answer": ANSWER}]) as lm, dspex.context(lm=lm):
        values = list(stream(question="What is 2 + 2?"))
    assert all(isinstance(v, StreamResponse) for v in values)
    assert values[0].predict_name == "self"
    assert "".join(v.chunk for v in values) == ANSWER and values[-1].is_last_chunk


def test_without_listeners_every_lm_chunk_comes_through() -> None:
    stream = dspex.streamify(dspex.Predict("question -> answer"))
    with served([{"answer": ANSWER}]) as lm, dspex.context(lm=lm):
        values = collect(stream, question="What is 2 + 2?")
    chunks = [v for v in values if isinstance(v, dspex.streaming.StreamChunk)]
    assert len(chunks) > 3 and "[[ ## answer ## ]]" in "".join(c.text for c in chunks)
    # As DSPy programs read a raw chunk (litellm's / the OpenAI SDK's shape).
    assert [c.choices[0].delta.content for c in chunks] == [c.text for c in chunks]
    assert isinstance(values[-1], dspex.Prediction)


def test_a_dspy_style_listener_subclass_receives_chunks_and_calls_super() -> None:
    """DSPy's StreamListener.receive(chunk) reads chunk.choices[0].delta.content; a subclass
    written for DSPy overrides it and defers to super()."""

    class Recording(StreamListener):
        def __init__(self, field: str) -> None:
            super().__init__(signature_field_name=field)
            self.seen: list[str] = []

        def receive(self, chunk: Any) -> StreamResponse | None:  # type: ignore[override]
            self.seen.append(chunk.choices[0].delta.content)
            return super().receive(chunk)

    listener = Recording("answer")
    stream = dspex.streamify(dspex.Predict("question -> answer"), stream_listeners=[listener])
    with served([{"answer": ANSWER}]) as lm, dspex.context(lm=lm):
        values = collect(stream, question="What is 2 + 2?")
    assert "".join(p.chunk for p in chunks_of(values, "answer")) == ANSWER
    assert len(listener.seen) > 3 and "[[ ## answer ## ]]" in "".join(listener.seen)


def test_a_stream_cut_short_flushes_what_was_held_back() -> None:
    """Text that might have been the next header's start waits; when the stream ends without
    a header, finalize() sends it (through flush(), as DSPy's does)."""
    listener = StreamListener("answer", predict_name="predict")
    first = listener.receive("[[ ## answer ## ]]\nThe answer [", call_id="call-1")
    assert first is not None and first.chunk == "The answer" and not first.is_last_chunk
    last = listener.finalize()
    assert last is not None and last.chunk == " [" and last.is_last_chunk
    assert listener.flush() == "" and listener.finalize() is None


def test_react_reports_tool_calls_and_streams_the_answer() -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    answers = [
        {"next_thought": "Add them.", "next_tool_name": "add", "next_tool_args": {"a": 2, "b": 2}},
        {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}},
        {"reasoning": "The tool said 4.", "answer": ANSWER},
    ]
    stream = dspex.streamify(
        dspex.ReAct("question -> answer", tools=[add]), stream_listeners=[StreamListener("answer")]
    )
    with served(answers) as lm, dspex.context(lm=lm):
        values = collect(stream, question="What is 2 + 2?")
    status = [v.message for v in values if isinstance(v, StatusMessage)]
    assert status == [
        "Calling tool add...",
        "Tool calling finished! Querying the LLM with tool calling results...",
    ]
    pieces = chunks_of(values, "answer")
    assert "".join(p.chunk for p in pieces) == ANSWER
    assert {p.predict_name for p in pieces} == {"extract.predict"}
    assert isinstance(values[-1], dspex.Prediction) and values[-1].answer == ANSWER


def test_a_status_message_provider_announces_modules_and_lm_calls() -> None:
    class Verbose(dspex.streaming.StatusMessageProvider):
        def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str:
            return f"start {type(instance).__name__}"

        def lm_end_status_message(self, outputs: Any) -> str:
            return f"lm gave {len(outputs)} completion(s)"

    stream = dspex.streamify(dspex.ChainOfThought("question -> answer"), Verbose())
    with served([{"reasoning": REASONING, "answer": ANSWER}]) as lm, dspex.context(lm=lm):
        values = collect(stream, question="What is 2 + 2?")
    status = [v.message for v in values if isinstance(v, StatusMessage)]
    assert status == ["start ChainOfThought", "start Predict", "lm gave 1 completion(s)"]


def test_a_status_message_provider_sees_no_header_or_key() -> None:
    class Echo(dspex.streaming.StatusMessageProvider):
        def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str:
            return repr({k: v for k, v in inputs.items() if k != "messages"})

    stream = dspex.streamify(dspex.Predict("question -> answer"), Echo())
    with serve(DummyLM([{"answer": ANSWER}])) as srv:
        headers = {"X-Api-Key": "hdr-secret-0a1b2c3d", "X-Org": "org-7"}
        lm = dspex.LM("openai/dummy", api_base=srv.url, api_key="x", extra_headers=headers)
        with dspex.context(lm=lm):
            values = collect(stream, question="What is 2 + 2?")
    status = [v.message for v in values if isinstance(v, StatusMessage)]
    assert len(status) == 1 and "org-7" in status[0]
    assert "hdr-secret-0a1b2c3d" not in status[0]


def test_a_cache_hit_streams_the_cached_answer_at_once() -> None:
    stream = dspex.streamify(
        dspex.Predict("question -> answer"), stream_listeners=[StreamListener("answer")]
    )
    with served([{"answer": ANSWER}], cache=True) as lm, dspex.context(lm=lm):
        first = chunks_of(collect(stream, question="What is 2 + 2?"), "answer")
        again = collect(stream, question="What is 2 + 2?")  # the script has no answer left
    assert len(first) > 2
    pieces = chunks_of(again, "answer")
    assert [(p.chunk, p.is_last_chunk) for p in pieces] == [(ANSWER, True)]
    assert isinstance(again[-1], dspex.Prediction)


def test_a_listener_for_a_field_no_predictor_has_is_refused() -> None:
    with pytest.raises(dspex.UserError, match="no predictor of the program has an output"):
        dspex.streamify(dspex.Predict("question -> answer"), stream_listeners=[StreamListener("x")])


def test_streaming_response_renders_server_sent_events() -> None:
    stream = dspex.streamify(
        dspex.Predict("question -> answer"), stream_listeners=[StreamListener("answer")]
    )

    async def run() -> list[str]:
        events = dspex.streaming.streaming_response(stream(question="What is 2 + 2?"))
        return [e async for e in events]

    with served([{"answer": ANSWER}]) as lm, dspex.context(lm=lm):
        events = asyncio.run(run())
    assert events[-1] == "data: [DONE]\n\n"
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    first, last = json.loads(events[0][6:]), json.loads(events[-2][6:])
    assert first["chunk"]["predict_name"] == "self" and first["chunk"]["chunk"] == "The"
    assert last["prediction"]["answer"] == ANSWER


def test_leaving_a_streamed_program_early_stops_its_lm_call() -> None:
    long_answer = " ".join(f"w{i}" for i in range(40))
    stream = dspex.streamify(
        dspex.Predict("question -> answer"),
        stream_listeners=[StreamListener("answer")],
        is_async_program=True,
    )
    with serve(DummyLM([{"answer": long_answer}])) as srv:
        srv.server.stream_interval = 0.05  # ~2.5 s for the whole answer
        lm = dspex.LM("openai/dummy", api_base=srv.url, api_key="x", cache=False)

        async def first_two() -> list[str]:
            got: list[str] = []
            values = stream(question="Say many words.")
            async for value in values:
                got.append(value.chunk)
                if len(got) == 2:
                    break
            await values.aclose()
            return got

        with dspex.context(lm=lm):
            assert asyncio.run(first_two()) == ["w0", " w1"]
        deadline = time.monotonic() + 5
        while srv.stats()["streams_cancelled"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.stats()["streams_cancelled"] == 1


def test_native_tool_calls_come_through_a_stream() -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    class CallTools(dspex.Signature):
        """Call the tools the question needs."""

        question: str = dspex.InputField()
        tools: list[dspex.Tool] = dspex.InputField()
        calls: dspex.ToolCalls = dspex.OutputField()

    stream = dspex.streamify(dspex.Predict(CallTools))
    adapter = dspex.ChatAdapter(use_native_function_calling=True)
    answer = {"tool_calls": [{"name": "add", "args": {"a": 2, "b": 3}}]}
    with served([answer]) as lm, dspex.context(lm=lm, adapter=adapter):
        values = collect(stream, question="2 + 3?", tools=[dspex.Tool(add)])
    calls = values[-1].calls.tool_calls  # assembled from the stream's tool_calls deltas
    assert [(c.name, c.args) for c in calls] == [("add", {"a": 2, "b": 3})] and calls[0].id


def test_the_programs_error_ends_the_stream() -> None:
    stream = dspex.streamify(dspex.Predict("question -> answer"))
    with served([]) as lm, dspex.context(lm=lm), pytest.raises(dspex.LMError, match="ran out"):
        collect(stream, question="What is 2 + 2?")
