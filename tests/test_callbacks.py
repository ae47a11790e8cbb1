"""Callbacks: events for modules, LM calls, adapters, tools and evaluations; usage tracking."""

import threading
from typing import Any

import dspex
from dspex.callbacks import tool_span
from dspex.testing import DummyLM


class Log(dspex.Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any, ...]] = []
        self._lock = threading.Lock()

    def _add(self, *event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def on_module_start(self, span, module, inputs):  # type: ignore[no-untyped-def]
        self._add("module_start", span.name, span.span_id, span.parent_id, dict(span.labels))

    def on_module_end(self, span, module, outputs, error):  # type: ignore[no-untyped-def]
        self._add("module_end", span.name, span.span_id, error)

    def on_lm_start(self, span, lm, request):  # type: ignore[no-untyped-def]
        self._add("lm_start", span.name, span.span_id, span.parent_id)

    def on_lm_end(self, span, lm, request, response, error):  # type: ignore[no-untyped-def]
        self._add("lm_end", span.name, span.span_id, response.span_id if response else None)

    def on_adapter_format(self, span, adapter, signature, messages):  # type: ignore[no-untyped-def]
        self._add("format", adapter.name, span.span_id)

    def on_adapter_parse(self, span, adapter, signature, response, outputs, error):  # type: ignore[no-untyped-def]
        self._add("parse", adapter.name, outputs, type(error).__name__ if error else None)

    def on_tool_start(self, span, name, args):  # type: ignore[no-untyped-def]
        self._add("tool_start", name, args)

    def on_tool_end(self, span, name, result, error):  # type: ignore[no-untyped-def]
        self._add("tool_end", name, result)

    def on_evaluate_start(self, span, evaluate, program, n):  # type: ignore[no-untyped-def]
        self._add("evaluate_start", n)

    def on_evaluate_end(self, span, evaluate, result, error):  # type: ignore[no-untyped-def]
        self._add("evaluate_end", result.score)


class Program(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.answer = dspex.ChainOfThought("question -> answer")

    def forward(self, question: str) -> dspex.Prediction:
        with tool_span("lookup", query=question) as out:
            out["result"] = "found"
        return self.answer(question=question)


def test_events_nest_with_paths_and_labels() -> None:
    log = Log()
    lm = DummyLM([{"reasoning": "r", "answer": "a"}])
    with dspex.context(lm=lm, callbacks=[log], labels={"stage": "demo"}):
        Program()(question="q")
    kinds = [e[0] for e in log.events]
    assert kinds == [
        "module_start",
        "tool_start",
        "tool_end",
        "module_start",
        "module_start",
        "format",
        "lm_start",
        "lm_end",
        "parse",
        "module_end",
        "module_end",
        "module_end",
    ]
    starts = [e for e in log.events if e[0] == "module_start"]
    assert [s[1] for s in starts] == ["", "answer", "answer.predict"]
    assert starts[0][3] is None and starts[1][3] == starts[0][2] and starts[2][3] == starts[1][2]
    assert all(s[4] == {"stage": "demo"} for s in starts)
    lm_start = next(e for e in log.events if e[0] == "lm_start")
    lm_end = next(e for e in log.events if e[0] == "lm_end")
    assert lm_start[3] == starts[2][2]  # the LM call sits under the predictor
    assert lm_end[3] == lm_end[2]  # the response carries its span id
    assert ("parse", "ChatAdapter", [{"reasoning": "r", "answer": "a"}], None) in log.events


def test_reask_emits_two_lm_calls_and_two_parses() -> None:
    log = Log()
    lm = DummyLM(["unreadable", '{"answer": 7}'])
    with dspex.context(callbacks=[log]):
        dspex.Predict("question -> answer: int", lm=lm)(question="?")
    parses = [e for e in log.events if e[0] == "parse"]
    assert [(p[1], p[3]) for p in parses] == [
        ("ChatAdapter", "FieldParseFailure"),
        ("JSONAdapter", None),
    ]
    assert sum(e[0] == "lm_end" for e in log.events) == 2


def test_errors_end_spans_and_broken_callbacks_are_ignored() -> None:
    class Broken(dspex.Callback):
        def on_module_start(self, span, module, inputs):  # type: ignore[no-untyped-def]
            raise RuntimeError("observer bug")

    log = Log()
    with dspex.context(lm=DummyLM([]), callbacks=[Broken(), log]):
        try:
            dspex.Predict("q -> a")(q="?")
        except dspex.DspexError:
            pass
    end = next(e for e in log.events if e[0] == "module_end")
    assert type(end[3]).__name__ == "ScriptExhaustedError"


def test_contexts_in_threads_do_not_mix_and_evaluate_is_observed() -> None:
    logs = {"a": Log(), "b": Log()}

    def worker(name: str) -> None:
        dev = [dspex.Example(q=str(i), a="x").with_inputs("q") for i in range(5)]
        lm = DummyLM({"": {"a": "x"}})
        with dspex.context(callbacks=[logs[name]], labels={"who": name}):
            dspex.Evaluate(devset=dev, metric=lambda e, p, t=None: 1.0, progress=False)(
                dspex.Predict("q -> a", lm=lm)
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, log in logs.items():
        assert sum(e[0] == "lm_end" for e in log.events) == 5
        assert log.events[0] == ("evaluate_start", 5)
        assert log.events[-1] == ("evaluate_end", 100.0)
        assert {e[4]["who"] for e in log.events if e[0] == "module_start"} == {name}


def test_track_usage_counts_cache_hits_separately() -> None:
    lm = DummyLM({"?": {"answer": "1"}}, cache=True)
    qa = dspex.Predict("question -> answer", lm=lm)
    with dspex.track_usage() as usage:
        qa(question="?")
        qa(question="?")  # served from the cache
    assert usage.total.calls == 2
    assert usage.total.cache_hits == 1
    assert usage.total.prompt_tokens > 0
    assert usage.total.cached_prompt_tokens == usage.total.prompt_tokens
    assert set(usage.by_model) == {lm.model}
    qa(question="?")
    assert usage.total.calls == 2  # nothing counted outside the block
