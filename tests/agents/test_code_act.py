"""CodeAct through the public API: the LM is scripted, its code runs for real in the sandbox
and calls host tools passed explicitly; the requests match DSPy 3.4's
(``golden/code_modules.json``; no DSPy import here)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.sandbox import PythonInterpreter, SandboxUnavailableError
from dspex.sandbox._deno import find_deno, find_pyodide, resolve_deno_dir
from dspex.testing import DummyLM

from .golden.cases import TOOLS

GOLDEN = json.loads((Path(__file__).parent / "golden" / "code_modules.json").read_text("utf-8"))
ACT_CASES = [c for c in GOLDEN["cases"] if c["module"] == "CodeAct"]


@pytest.fixture(scope="session")
def sandbox_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One start-up snapshot for the session, so only the first sandbox starts slowly."""
    try:
        find_pyodide(resolve_deno_dir(find_deno()))
    except SandboxUnavailableError as exc:
        if os.environ.get("DSPEX_SANDBOX_OPTIONAL") == "1":
            pytest.skip(f"the sandbox is unavailable and DSPEX_SANDBOX_OPTIONAL=1: {exc}")
        pytest.fail(f"the sandbox is unavailable (set DSPEX_SANDBOX_OPTIONAL=1 to skip): {exc}")
    return tmp_path_factory.mktemp("dspex-cache")


@pytest.fixture(autouse=True)
def _shared_snapshot(sandbox_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSPEX_CACHE_DIR", str(sandbox_cache))


CALLS: list[tuple[str, Any]] = []


def price(item: str, quantity: int = 1) -> float:
    """The price of some units of an item, in euros."""
    CALLS.append(("price", (item, quantity)))
    return {"apple": 0.5, "pear": 0.75}[item] * quantity


def delete_everything() -> str:
    """A host function the agent was not given."""
    CALLS.append(("delete_everything", ()))
    return "deleted"


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


@pytest.mark.parametrize("case", ACT_CASES, ids=lambda c: c["name"])
def test_requests_match_dspy(case: dict[str, Any]) -> None:
    adapter = dspex.JSONAdapter() if case["adapter"] == "JSONAdapter" else dspex.ChatAdapter()
    lm = DummyLM([dict(a) for a in case["answers"]], adapter=adapter)
    act = dspex.CodeAct(
        dspex.Signature(case["spec"], case["instructions"]),
        tools=[TOOLS[name] for name in case["tools"]],
        max_iters=case["max_iters"],
    )
    with dspex.context(lm=lm, adapter=adapter):
        pred = act(**case["inputs"])
    requests = [[dict(m) for m in entry.messages] for entry in lm.history]
    for i, (ours, theirs) in enumerate(zip(requests, case["requests"], strict=True)):
        assert ours == theirs, f"request {i} differs"
    assert pred.trajectory == case["trajectory"]
    assert {k: pred[k] for k in case["outputs"]} == case["outputs"]
    assert [name for name, _ in act.named_predictors()] == case["predictors"]


def _script(*codes: tuple[str, bool], answer: str) -> DummyLM:
    steps: list[dict[str, Any]] = [
        {"generated_code": code, "finished": str(done)} for code, done in codes
    ]
    return DummyLM([*steps, {"reasoning": "From the trajectory.", "answer": answer}])


def test_code_calls_a_host_tool_and_the_agent_answers() -> None:
    lm = _script(
        ("total = price('apple', 4) + price(item='pear')\nprint(total)", True), answer="2.75"
    )
    act = dspex.CodeAct("question -> answer: float", tools=[price])
    with dspex.context(lm=lm):
        pred = act(question="What do 4 apples and a pear cost?")
    assert CALLS == [("price", ("apple", 4)), ("price", ("pear", 1))]  # ran on the host
    assert pred.trajectory["code_output_0"] == '"2.75\\n"'
    assert pred.answer == 2.75


def test_variables_persist_between_steps_within_a_run() -> None:
    lm = _script(("subtotal = price('pear', 2)", False), ("print(subtotal * 2)", True), answer="3")
    act = dspex.CodeAct("question -> answer", tools=[price])
    with dspex.context(lm=lm):
        pred = asyncio.run(act.acall(question="Twice two pears?"))
    assert pred.trajectory["code_output_0"] == "1.5"  # `subtotal = ...` shows its value
    assert pred.trajectory["code_output_1"] == '"3.0\\n"'


def test_a_tool_not_passed_is_not_callable() -> None:
    lm = _script(("print(delete_everything())", True), answer="no")
    act = dspex.CodeAct("question -> answer", tools=[price])
    with dspex.context(lm=lm):
        pred = act(question="Delete it all.")
    assert pred.trajectory["observation_0"] == (
        "Failed to execute the generated code: NameError: name 'delete_everything' is not defined"
    )
    assert CALLS == []


def test_invalid_tool_arguments_reach_the_code_as_an_error_and_never_run() -> None:
    lm = _script(("price('apple', 'many')", True), answer="?")
    act = dspex.CodeAct("question -> answer", tools=[price])
    with dspex.context(lm=lm):
        pred = act(question="?")
    observation = pred.trajectory["observation_0"]
    assert observation.startswith("Failed to execute the generated code: ToolError: price:")
    assert CALLS == []


def test_max_iters_ends_the_loop_then_extracts() -> None:
    lm = _script(("print(1)", False), ("print(2)", False), answer="2")
    act = dspex.CodeAct("question -> answer", tools=[price], max_iters=2)
    with dspex.context(lm=lm):
        pred = act(question="?")
    assert list(pred.trajectory) == [
        "generated_code_0",
        "code_output_0",
        "generated_code_1",
        "code_output_1",
    ]
    assert pred.answer == "2"


def test_an_interpreter_must_carry_the_tools() -> None:
    act = dspex.CodeAct("question -> answer", tools=[price])
    lm = _script(("print(price('apple'))", True), answer="0.5")
    with PythonInterpreter() as bare, pytest.raises(dspex.UserError, match="host_tools"):
        act(bare, question="?")
    with PythonInterpreter(tools=act.host_tools()) as equipped, dspex.context(lm=lm):
        assert act(equipped, question="?").answer == "0.5"
        assert equipped.pid is not None  # the caller's: left open


def test_structure_state_and_reload(tmp_path: Path) -> None:
    act = dspex.CodeAct("question -> answer", tools=[price])
    assert [n for n, _ in act.named_predictors()] == ["codeact", "extractor.predict"]
    act.codeact.demos = [dspex.Example(question="q", trajectory="{}", generated_code="print(1)")]
    fresh = dspex.CodeAct("question -> answer", tools=[price])
    fresh.load(act.save(tmp_path / "a.json"))
    assert fresh.codeact.demos[0].generated_code == "print(1)"
    with pytest.raises(dspex.UserError, match="tools come from code"):
        act.save(tmp_path / "whole", save_program=True)
    with pytest.raises(dspex.UserError, match="identifier"):
        dspex.CodeAct("question -> answer", tools=[dspex.Tool(price, name="get-price")])
