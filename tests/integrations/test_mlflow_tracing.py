"""MLflow traces of dspex calls, on MLflow's SQLite backend: ``dspex.mlflow.autolog()``, the
link to an active run, and the sampled traces of an optimization run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import dspex
import dspex.mlflow
from dspex.integrations.mlflow._tracing import run_traces
from dspex.testing import DummyLM
from tests.integrations.conftest import Tracking

SECRET = "sk-mlflow-trace-1a2b3c4d5e"


@pytest.fixture
def autolog(tracking: Tracking) -> Iterator[None]:
    dspex.mlflow.autolog(tracking_uri=tracking.uri)
    yield
    dspex.mlflow.autolog(disable=True)


def _new_traces(before: set[str], experiment_id: str = "0") -> list[Any]:
    import mlflow

    mlflow.flush_trace_async_logging()
    found = mlflow.search_traces(locations=[experiment_id], return_type="list")
    return [t for t in found if t.info.trace_id not in before]


def _trace_ids(experiment_id: str = "0") -> set[str]:
    import mlflow

    mlflow.flush_trace_async_logging()
    found = mlflow.search_traces(locations=[experiment_id], return_type="list")
    return {t.info.trace_id for t in found}


def _cot(answer: str = "4") -> tuple[dspex.Module, DummyLM]:
    lm = DummyLM([{"reasoning": "adding", "answer": answer}], api_key=SECRET)
    return dspex.ChainOfThought("question -> answer"), lm


def test_a_program_call_under_autolog_is_a_trace_with_its_span_tree(autolog: None) -> None:
    before = _trace_ids()
    qa, lm = _cot()
    qa(question=f"What is 2+2? (key {SECRET})", lm=lm)

    (trace,) = _new_traces(before)
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"ChainOfThought", "predict", "ChatAdapter", "chat script"}
    root, predict = spans["ChainOfThought"], spans["predict"]
    adapter, chat = spans["ChatAdapter"], spans["chat script"]
    assert root.parent_id is None
    assert predict.parent_id == root.span_id
    assert adapter.parent_id == predict.span_id
    assert chat.parent_id == adapter.span_id
    assert [root.span_type, adapter.span_type, chat.span_type] == ["CHAIN", "PARSER", "CHAT_MODEL"]

    usage = chat.attributes["mlflow.chat.tokenUsage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert trace.info.token_usage["input_tokens"] == usage["input_tokens"]  # counted once
    assert root.outputs == {"reasoning": "adding", "answer": "4"}
    assert chat.inputs["messages"][-1]["role"] == "user"
    # Redacted inputs, and the key appears nowhere in the trace.
    assert "[REDACTED]" in root.inputs["question"]
    assert SECRET not in trace.to_json()


def test_an_agent_is_an_agent_span_and_its_tools_tool_spans(autolog: None) -> None:
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    lm = DummyLM(
        [
            {
                "next_thought": "look",
                "next_tool_name": "weather",
                "next_tool_args": {"city": "Oslo"},
            },
            {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "it is sunny", "answer": "sunny"},
        ]
    )
    before = _trace_ids()
    dspex.ReAct("question -> answer", tools=[weather])(question="Weather in Oslo?", lm=lm)

    (trace,) = _new_traces(before)
    root = trace.data.spans[0]
    assert root.parent_id is None and root.span_type == "AGENT"
    tools = {s.name: s for s in trace.data.spans if s.span_type == "TOOL"}
    tool = tools["execute_tool weather"]
    assert tool.inputs == {"city": "Oslo"} and tool.outputs == "sunny in Oslo"
    assert sum(s.span_type == "CHAT_MODEL" for s in trace.data.spans) == 3


def test_a_retrieval_is_a_retriever_span_with_documents(autolog: None) -> None:
    rm = dspex.retrievers.CallableRetriever(lambda query, k: ["Paris", "Rome"][:k], k=2)
    before = _trace_ids()
    rm("capitals")

    (trace,) = _new_traces(before)
    (span,) = trace.data.spans
    assert span.span_type == "RETRIEVER"
    assert span.inputs == {"query": "capitals", "k": 2}
    assert [d["page_content"] for d in span.outputs] == ["Paris", "Rome"]


def test_autolog_disable_stops_tracing(tracking: Tracking) -> None:
    dspex.mlflow.autolog(tracking_uri=tracking.uri)
    dspex.mlflow.autolog(disable=True)
    assert dspex.settings.callbacks == ()
    before = _trace_ids()
    qa, lm = _cot()
    qa(question="2+2?", lm=lm)
    assert _new_traces(before) == []


def test_traces_made_inside_a_run_link_to_it(autolog: None, tracking: Tracking) -> None:
    import mlflow

    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        qa, lm = _cot()
        qa(question="2+2?", lm=lm)
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(
        locations=[tracking.experiment_id], run_id=run.info.run_id, return_type="list"
    )
    assert len(traces) == 1
    assert traces[0].info.trace_metadata["mlflow.sourceRun"] == run.info.run_id


def test_an_optimization_run_gets_a_sample_of_traces_linked_to_it(tracking: Tracking) -> None:
    import mlflow

    dspex.mlflow.autolog(tracking_uri=tracking.uri, compile_trace_sample=2)
    try:
        # As a flow opens its run: by id, from a client, not as MLflow's active run.
        client = mlflow.MlflowClient(tracking.uri)
        run_id = client.create_run(tracking.experiment_id).info.run_id
        with run_traces(run_id, tracking.uri):
            for answer in ("1", "2", "3"):
                qa, lm = _cot(answer)
                qa(question="?", lm=lm)
        client.set_terminated(run_id)
    finally:
        dspex.mlflow.autolog(disable=True)
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(
        locations=[tracking.experiment_id], run_id=run_id, return_type="list"
    )
    assert len(traces) == 2  # the first two of three calls
    assert {t.info.experiment_id for t in traces} == {tracking.experiment_id}
    assert {t.data.spans[0].outputs["answer"] for t in traces} == {"1", "2"}


def test_the_environment_turns_on_an_optimization_runs_traces(
    tracking: Tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    # A `dspex optimize` process or a deployment's worker never calls autolog().
    monkeypatch.setenv("DSPEX_MLFLOW_TRACES", "1")
    client = mlflow.MlflowClient(tracking.uri)
    run_id = client.create_run(tracking.experiment_id).info.run_id
    with run_traces(run_id, tracking.uri):
        qa, lm = _cot()
        qa(question="?", lm=lm)
    client.set_terminated(run_id)
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(
        locations=[tracking.experiment_id], run_id=run_id, return_type="list"
    )
    assert len(traces) == 1

    monkeypatch.setenv("DSPEX_MLFLOW_TRACES", "some")
    with pytest.raises(dspex.UserError, match="DSPEX_MLFLOW_TRACES"), run_traces(run_id):
        pass


def test_autolog_refuses_a_negative_sample() -> None:
    with pytest.raises(dspex.UserError, match="compile_trace_sample"):
        dspex.mlflow.autolog(compile_trace_sample=-1)
