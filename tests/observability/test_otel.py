"""OpenTelemetry spans for dspex calls: a real SDK tracer provider, an in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import dspex
import dspex.observability
from dspex.testing import DummyLM

SECRET = "sk-otel-test-9f8e7d6c5b4a"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    dspex.observability.instrument(provider, capture_content=True)
    yield spans
    dspex.observability.uninstrument()
    provider.shutdown()


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def _every_value(span: ReadableSpan) -> list[str]:
    values = [str(v) for v in (span.attributes or {}).values()]
    for event in span.events:
        values += [str(v) for v in (event.attributes or {}).values()]
    return [*values, span.name, str(span.status.description)]


def test_a_chain_of_thought_call_is_a_tree_of_spans_with_genai_attributes(
    exporter: InMemorySpanExporter,
) -> None:
    lm = DummyLM(
        [{"reasoning": "adding", "answer": "4"}],
        api_key=SECRET,
        temperature=0.3,
        max_tokens=200,
    )
    qa = dspex.ChainOfThought("question -> answer")
    result = qa(question=f"What is 2+2? (my key is {SECRET})", lm=lm)
    assert result.answer == "4"

    spans = _by_name(exporter.get_finished_spans())
    assert set(spans) == {"ChainOfThought", "predict", "ChatAdapter", "chat script"}
    root, predict = spans["ChainOfThought"], spans["predict"]
    adapter, chat = spans["ChatAdapter"], spans["chat script"]
    # One trace, each span under the call that made it.
    assert len({s.context.trace_id for s in spans.values()}) == 1
    assert root.parent is None
    assert predict.parent is not None and predict.parent.span_id == root.context.span_id
    assert adapter.parent is not None and adapter.parent.span_id == predict.context.span_id
    assert chat.parent is not None and chat.parent.span_id == adapter.context.span_id
    assert [e.name for e in adapter.events] == ["format", "parse"]

    attrs = dict(chat.attributes or {})
    assert chat.kind is SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "dspex-dummy"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "script"
    assert attrs["gen_ai.request.temperature"] == 0.3
    assert attrs["gen_ai.request.max_tokens"] == 200
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    usage = result.get_lm_usage()["dspex-dummy/script"]
    assert attrs["gen_ai.usage.input_tokens"] == usage["prompt_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"] > 0
    # The module spans carry the tokens of everything under them.
    assert (root.attributes or {})["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert "2+2" in str(attrs["gen_ai.input.messages"])
    assert "4" in str(attrs["gen_ai.output.messages"])
    assert (predict.attributes or {})["dspex.module.class"] == "Predict"

    # The key was registered by the LM: no span says it, wherever it was written.
    for span in spans.values():
        assert not any(SECRET in v for v in _every_value(span)), span.name
    assert "[REDACTED]" in str((root.attributes or {})["dspex.inputs"])


def test_a_program_call_joins_the_callers_current_span() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("app")
    with (
        dspex.context(callbacks=[dspex.observability.OpenTelemetryCallback(provider)]),
        tracer.start_as_current_span("POST /answer") as request,
    ):
        dspex.Predict("q -> a", lm=DummyLM([{"a": "1"}]))(q="?")
    program = _by_name(spans.get_finished_spans())["Predict"]
    assert program.parent is not None
    assert program.parent.span_id == request.get_span_context().span_id


def test_content_is_not_recorded_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    callback = dspex.observability.OpenTelemetryCallback(provider)
    with dspex.context(callbacks=[callback]):
        dspex.Predict("q -> a", lm=DummyLM([{"a": "secret answer"}]))(q="private question")
    finished = spans.get_finished_spans()
    assert len(finished) == 3
    for span in finished:
        text = " ".join(_every_value(span))
        assert "private question" not in text and "secret answer" not in text


def test_failures_and_tool_calls_are_spans_with_their_status(
    exporter: InMemorySpanExporter,
) -> None:
    def lookup(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    def broken(city: str) -> str:
        """Always fails."""
        raise RuntimeError(f"backend down, key {SECRET}")

    tool, failing = dspex.Tool(lookup), dspex.Tool(broken)
    assert tool(city="Oslo") == "sunny in Oslo"
    with pytest.raises(RuntimeError):
        failing(city="Oslo")
    spans = _by_name(exporter.get_finished_spans())
    ok, bad = spans["execute_tool lookup"], spans["execute_tool broken"]
    assert (ok.attributes or {})["gen_ai.tool.name"] == "lookup"
    assert "Oslo" in str((ok.attributes or {})["gen_ai.tool.call.arguments"])
    assert "sunny" in str((ok.attributes or {})["gen_ai.tool.call.result"])
    assert bad.status.status_code is StatusCode.ERROR
    assert (bad.attributes or {})["error.type"] == "RuntimeError"
    assert not any(SECRET in v for v in _every_value(bad))


def test_retrieval_and_embedding_calls_are_spans(exporter: InMemorySpanExporter) -> None:
    rm = dspex.retrievers.CallableRetriever(lambda query, k: ["Paris", "Rome"][:k], k=1)
    assert rm("capital of France").passages == ["Paris"]
    embed = dspex.retrievers.Embedder(lambda texts: [[float(len(t)), 1.0] for t in texts])
    assert len(embed(["ab", "abc"])) == 2

    spans = exporter.get_finished_spans()
    (retrieve,) = [s for s in spans if (s.attributes or {})["dspex.span.kind"] == "retrieve"]
    (embedding,) = [s for s in spans if (s.attributes or {})["dspex.span.kind"] == "embed"]
    assert (retrieve.attributes or {})["dspex.retrieve.passages"] == 1
    assert "Paris" in str((retrieve.attributes or {})["dspex.outputs"])
    assert (embedding.attributes or {})["gen_ai.operation.name"] == "embeddings"
    assert (embedding.attributes or {})["dspex.embed.texts"] == 2


def test_uninstrument_stops_the_spans(exporter: InMemorySpanExporter) -> None:
    assert dspex.observability.is_instrumented()
    dspex.observability.uninstrument()
    assert not dspex.observability.is_instrumented()
    assert dspex.settings.callbacks == ()
    dspex.Predict("q -> a", lm=DummyLM([{"a": "1"}]))(q="?")
    assert exporter.get_finished_spans() == ()


def test_off_by_default_and_not_imported() -> None:
    code = (
        "import sys, dspex\n"
        "from dspex.testing import DummyLM\n"
        "dspex.Predict('q -> a', lm=DummyLM([{'a': '1'}]))(q='?')\n"
        "print(len(dspex.settings.callbacks), 'opentelemetry' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]
