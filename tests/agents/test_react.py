"""``dspex.ReAct`` through the public API, with scripted LMs: tools called and answered,
failures turned into observations, timeouts, refusals, async, context-window trimming,
concurrency, and its predictors as optimizers and save/load see them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.errors import ContextWindowExceededError
from dspex.testing import DummyLM


def step(tool: str, args: Any, thought: str = "...") -> dict[str, Any]:
    return {"next_thought": thought, "next_tool_name": tool, "next_tool_args": args}


FINISH = step("finish", {}, "Done.")


class Recorder:
    """Tools that record their calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        self.calls.append(("add", {"a": a, "b": b}))
        return a + b

    def capital(self, country: str) -> str:
        """The capital of a country."""
        self.calls.append(("capital", {"country": country}))
        return {"France": "Paris"}.get(country, "unknown")

    def delete_all(self, table: str) -> str:
        """Delete every row of a table."""
        self.calls.append(("delete_all", {"table": table}))
        return "deleted"


def run(agent: dspex.ReAct, answers: Sequence[Any], **inputs: Any) -> dspex.Prediction:
    with dspex.context(lm=DummyLM(list(answers))):
        return agent(**inputs)


def test_two_tools_then_the_answer() -> None:
    tools = Recorder()
    agent = dspex.ReAct("question -> answer", tools=[tools.add, tools.capital])
    pred = run(
        agent,
        [
            step("add", {"a": 2, "b": 3}),
            step("capital", {"country": "France"}),
            FINISH,
            {"reasoning": "5 and Paris.", "answer": "5, Paris"},
        ],
        question="2 + 3, and the capital of France?",
    )
    assert pred.answer == "5, Paris"
    assert tools.calls == [("add", {"a": 2, "b": 3}), ("capital", {"country": "France"})]
    traj = pred.trajectory
    assert [traj[f"tool_name_{i}"] for i in range(3)] == ["add", "capital", "finish"]
    assert (traj["observation_0"], traj["observation_1"], traj["observation_2"]) == (
        5,
        "Paris",
        "Completed.",
    )


def test_a_raising_tool_becomes_an_observation_without_a_traceback() -> None:
    secret = "sk-test-0123456789abcdef"

    def fetch(url: str) -> str:
        """Fetch a page."""
        token = secret  # a local a traceback with locals would show
        raise ConnectionError(f"refused with key {token}\n  at line 3")

    agent = dspex.ReAct("question -> answer", tools=[fetch])
    pred = run(
        agent,
        [step("fetch", {"url": "u"}), FINISH, {"reasoning": "-", "answer": "unknown"}],
        question="?",
    )
    observation = pred.trajectory["observation_0"]
    assert observation.startswith("Execution error in fetch: ConnectionError: refused with key")
    assert secret not in observation and "Traceback" not in observation
    assert "\n" not in observation
    assert pred.answer == "unknown"


def test_a_hanging_tool_is_stopped_at_its_timeout_and_the_run_goes_on() -> None:
    release = threading.Event()

    def slow(q: str) -> str:
        """Never answers in time."""
        release.wait(10)
        return "late"

    def fast(q: str) -> str:
        """Answers at once."""
        return f"fast:{q}"

    agent = dspex.ReAct(
        "question -> answer", tools=[dspex.Tool(slow, timeout=0.2), fast], tool_timeout=30
    )
    start = time.perf_counter()
    pred = run(
        agent,
        [
            step("slow", {"q": "a"}),
            step("fast", {"q": "b"}),
            FINISH,
            {"reasoning": "-", "answer": "b"},
        ],
        question="?",
    )
    assert time.perf_counter() - start < 5
    assert pred.trajectory["observation_0"].startswith("Execution error in slow: TimeoutError:")
    assert pred.trajectory["observation_1"] == "fast:b"
    release.set()


def test_react_applies_its_default_timeout_to_tools_without_their_own() -> None:
    release = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "late"

    agent = dspex.ReAct("question -> answer", tools=[slow], tool_timeout=0.2)
    pred = run(agent, [step("slow", {}), FINISH, {"reasoning": "-", "answer": "-"}], question="?")
    assert "did not finish within 0.2 s" in pred.trajectory["observation_0"]
    release.set()


def test_an_unknown_tool_is_never_run_and_becomes_an_observation() -> None:
    tools = Recorder()
    agent = dspex.ReAct("question -> answer", tools=[tools.add])
    unknown = step("delete_all", {"table": "users"})
    lm = DummyLM(
        # The ChatAdapter cannot read the tool name and re-asks once in JSON (as DSPy's does).
        [unknown, unknown, step("add", {"a": 1, "b": 1}), FINISH, {"reasoning": "-", "answer": "2"}]
    )
    with dspex.context(lm=lm):
        pred = agent(question="?")
    assert tools.calls == [("add", {"a": 1, "b": 1})]
    assert pred.trajectory["tool_name_0"] == "delete_all"
    assert pred.trajectory["observation_0"] == (
        "Execution error in delete_all: there is no tool named 'delete_all'; the tools are "
        "add, finish. Nothing was run."
    )
    assert pred.answer == "2"


def test_an_unknown_tool_without_the_json_reask() -> None:
    agent = dspex.ReAct("question -> answer", tools=[Recorder().add])
    adapter = dspex.ChatAdapter(use_json_adapter_fallback=False)
    lm = DummyLM([step("rm", {}), FINISH, {"reasoning": "-", "answer": "-"}])
    with dspex.context(lm=lm, adapter=adapter):
        pred = agent(question="?")
    assert "there is no tool named 'rm'" in pred.trajectory["observation_0"]
    assert len(lm.history) == 3


def test_invalid_arguments_are_never_run() -> None:
    tools = Recorder()
    agent = dspex.ReAct("question -> answer", tools=[tools.add])
    adapter = dspex.ChatAdapter(use_json_adapter_fallback=False)
    answers = [
        step("add", {"a": "two", "b": 1}),  # not an int
        step("add", {"a": 1}),  # b missing
        step("add", {"a": 1, "b": 2, "rm": True}),  # an argument add does not take
        step("add", "[1, 2]"),  # not an object
        FINISH,
        {"reasoning": "-", "answer": "-"},
    ]
    with dspex.context(lm=DummyLM(answers), adapter=adapter):
        pred = agent(question="?")
    assert tools.calls == []
    observations = [pred.trajectory[f"observation_{i}"] for i in range(4)]
    assert all(o.startswith("Execution error in add: ") for o in observations)
    assert "DataError" in observations[0] and "'a'" in observations[0]
    assert "missing required argument(s) ['b']" in observations[1]
    assert "unknown argument(s) ['rm']" in observations[2]
    assert "must be a JSON object" in observations[3]


def test_the_allow_policy_refuses_a_call_which_is_recorded_and_never_run() -> None:
    tools = Recorder()
    seen: list[tuple[str, dict[str, Any]]] = []

    def allow(name: str, args: dict[str, Any]) -> bool:
        seen.append((name, args))
        return name != "delete_all"

    agent = dspex.ReAct("question -> answer", tools=[tools.add, tools.delete_all], allow=allow)
    pred = run(
        agent,
        [
            step("delete_all", {"table": "users"}, "The page told me to."),
            step("add", {"a": "1", "b": 2}),
            FINISH,
            {"reasoning": "-", "answer": "3"},
        ],
        question="?",
    )
    assert tools.calls == [("add", {"a": 1, "b": 2})]
    assert seen == [("delete_all", {"table": "users"}), ("add", {"a": 1, "b": 2})]  # validated
    assert pred.trajectory["observation_0"] == (
        "Execution error in delete_all: PermissionError: the allow policy refused this call "
        "to 'delete_all'; it was not run"
    )


def test_a_failing_policy_refuses() -> None:
    tools = Recorder()

    def allow(name: str, args: dict[str, Any]) -> bool:
        raise KeyError("oops")

    agent = dspex.ReAct("question -> answer", tools=[tools.add], allow=allow)
    pred = run(
        agent,
        [step("add", {"a": 1, "b": 1}), FINISH, {"reasoning": "-", "answer": "-"}],
        question="?",
    )
    assert tools.calls == []
    assert "the allow policy failed (KeyError)" in pred.trajectory["observation_0"]


async def test_async_tools_and_acall() -> None:
    release = asyncio.Event()

    async def search(query: str) -> list[str]:
        """Search the notes."""
        return [f"a note on {query}"]

    async def stuck() -> str:
        await release.wait()
        return "late"

    agent = dspex.ReAct("question -> answer", tools=[search, stuck], tool_timeout=0.2)
    lm = DummyLM(
        [
            step("search", {"query": "cats"}),
            step("stuck", {}),
            FINISH,
            {"reasoning": "-", "answer": "cats"},
        ]
    )
    with dspex.context(lm=lm):
        pred = await agent.acall(question="cats?")
    assert pred.trajectory["observation_0"] == ["a note on cats"]
    assert pred.trajectory["observation_1"].startswith("Execution error in stuck: TimeoutError")
    assert pred.answer == "cats"


def test_max_iters_ends_the_loop_and_extracts() -> None:
    tools = Recorder()
    agent = dspex.ReAct("question -> answer", tools=[tools.add], max_iters=2)
    pred = run(
        agent,
        [
            step("add", {"a": 1, "b": 1}),
            step("add", {"a": 2, "b": 2}),
            {"reasoning": "-", "answer": "4"},
        ],
        question="?",
    )
    assert len(tools.calls) == 2 and pred.answer == "4"
    pred = run(
        agent,
        [step("add", {"a": 1, "b": 1}), {"reasoning": "-", "answer": "2"}],
        question="?",
        max_iters=1,
    )
    assert "thought_1" not in pred.trajectory


class TightLM(DummyLM):
    """Refuses prompts longer than ``limit`` characters, as a provider's context window does."""

    def __init__(self, answers: Sequence[Any], limit: int, fits: int = 10**9) -> None:
        super().__init__(list(answers))
        self.limit = limit
        self.fits = fits  # after this many requests, none fits
        self.refused = 0

    async def aforward(self, messages: Any, **kwargs: Any) -> Any:
        size = sum(len(str(m["content"])) for m in messages)
        if size > self.limit or self.request_count >= self.fits:
            self.refused += 1
            raise ContextWindowExceededError("prompt too long", model=self.model)
        return await super().aforward(messages, **kwargs)


def test_a_context_window_error_trims_the_oldest_steps() -> None:
    def read(page: int) -> str:
        """Read a page."""
        return f"page {page} " + "x" * 1000

    agent = dspex.ReAct("question -> answer", tools=[read])
    # How long the prompt is with an empty trajectory.
    empty = dspex.ChatAdapter().format(
        agent.react.signature, [], {"question": "?", "trajectory": ""}
    )
    base = sum(len(m["content"]) for m in empty)
    lm = TightLM(
        [
            step("read", {"page": 1}),
            step("read", {"page": 2}),
            FINISH,
            {"reasoning": "-", "answer": "-"},
        ],
        limit=base + 1500,
    )
    with dspex.context(lm=lm):
        pred = agent(question="?")
    # Two pages do not fit: the first step is dropped once, and stays dropped.
    assert lm.refused == 1
    assert "thought_0" not in pred.trajectory
    assert pred.trajectory["observation_1"].startswith("page 2")
    assert list(pred.trajectory)[-1] == "observation_2"


def test_context_window_retries_are_bounded() -> None:
    agent = dspex.ReAct("question -> answer", tools=[Recorder().add])
    lm = TightLM([step("add", {"a": 1, "b": 1})] * 5, limit=0)
    with dspex.context(lm=lm), pytest.raises(ContextWindowExceededError):
        agent(question="?")
    # No step can be dropped from an empty trajectory: the loop ends, and so does extract.
    assert lm.refused == 2


def test_trimming_retries_at_most_three_times() -> None:
    agent = dspex.ReAct("question -> answer", tools=[Recorder().add])
    lm = TightLM([step("add", {"a": 1, "b": 1})] * 5, limit=10**9, fits=5)
    with dspex.context(lm=lm), pytest.raises(ContextWindowExceededError, match="even after 3"):
        agent(question="?")
    # Five steps fit; then the sixth turn and the extract each try 1 + 3 times.
    assert lm.refused == 8


def test_concurrent_runs_share_no_state() -> None:
    def echo(text: str) -> str:
        """Echo the text, slowly."""
        time.sleep(0.05)
        return text.upper()

    agent = dspex.ReAct("question -> answer", tools=[echo])
    results: dict[str, dspex.Prediction] = {}
    barrier = threading.Barrier(4)

    def worker(word: str) -> None:
        lm = DummyLM([step("echo", {"text": word}), FINISH, {"reasoning": "-", "answer": word}])
        barrier.wait()
        with dspex.context(lm=lm):
            results[word] = agent(question=word)

    threads = [threading.Thread(target=worker, args=(w,)) for w in ("ab", "cd", "ef", "gh")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for word, pred in results.items():
        assert pred.answer == word
        assert pred.trajectory["observation_0"] == word.upper()
        assert len(pred.trajectory) == 8


def test_predictors_are_visible_and_saved_without_tools(tmp_path: Path) -> None:
    tools = Recorder()
    agent = dspex.ReAct("question -> answer", tools=[tools.add])
    assert [name for name, _ in agent.named_predictors()] == ["react", "extract.predict"]
    agent.react.demos = [
        dspex.Example(
            question="q",
            trajectory="t",
            next_thought="n",
            next_tool_name="finish",
            next_tool_args={},
        )
    ]
    path = agent.save(tmp_path / "agent.json")
    assert "add" in path.read_text()  # the instructions name the tool...
    assert "Recorder" not in path.read_text()  # ...but the tool itself is not saved
    fresh = dspex.ReAct("question -> answer", tools=[Recorder().add]).load(path)
    assert fresh.react.demos[0].next_thought == "n"
    with pytest.raises(dspex.UserError, match="tools come from code"):
        agent.save(tmp_path / "whole", save_program=True)


def test_copies_share_the_tool_functions() -> None:
    tools = Recorder()
    agent = dspex.ReAct("question -> answer", tools=[tools.add])
    copy = agent.deepcopy()
    assert copy.tools["add"].func == tools.add and copy.react is not agent.react


def test_tool_names_must_be_unique_and_not_finish() -> None:
    def finish() -> str:
        return "x"

    with pytest.raises(dspex.UserError, match="'finish'"):
        dspex.ReAct("question -> answer", tools=[finish])
    add = Recorder().add
    with pytest.raises(dspex.UserError, match="two tools are named 'add'"):
        dspex.ReAct("question -> answer", tools=[add, add])


def test_tool_calls_are_spans_under_the_agent_and_trace_rows() -> None:
    tools = Recorder()
    agent = dspex.ReAct("question -> answer", tools=[tools.add])
    with dspex.traces.record(run_id="agent"):
        run(
            agent,
            [step("add", {"a": 1, "b": 2}), FINISH, {"reasoning": "-", "answer": "3"}],
            question="?",
        )
    rows = dspex.traces.sql(
        "SELECT t.module_path AS tool, t.inputs, m.module_class AS parent FROM traces t "
        "JOIN traces m ON t.parent_span_id = m.span_id WHERE t.kind = 'tool' "
        "AND t.run_id = 'agent' ORDER BY t.started_at"
    ).to_pylist()
    assert [(r["tool"], r["parent"]) for r in rows] == [("add", "ReAct"), ("finish", "ReAct")]
