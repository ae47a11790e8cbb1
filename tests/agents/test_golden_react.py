"""dspex's ReAct sends DSPy 3.4's requests byte for byte: every request of each run in
``golden/cases.py`` equals the one DSPy sent (``golden/react.json``, written by
``benchmarks/dspy_golden_react.py``; this test never imports DSPy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.testing import DummyLM

from .golden import cases
from .golden.cases import CASES, TOOLS, ReactCase

GOLDEN = json.loads((Path(__file__).parent / "golden" / "react.json").read_text("utf-8"))
BY_NAME = {row["case"]: row for row in GOLDEN["react"]}
TOOLCALLS = GOLDEN["toolcalls"]


def _run(case: ReactCase) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    adapter = dspex.JSONAdapter() if case.adapter == "JSONAdapter" else dspex.ChatAdapter()
    lm = DummyLM([dict(a) for a in case.answers], adapter=adapter)
    react = dspex.ReAct(
        dspex.Signature(case.spec, case.instructions),
        tools=[TOOLS[name] for name in case.tools],
        max_iters=case.max_iters,
    )
    with dspex.context(lm=lm, adapter=adapter):
        pred = react(**case.inputs)
    requests = [[dict(m) for m in entry.messages] for entry in lm.history]
    return requests, json.loads(json.dumps(pred.trajectory, default=str))


def test_every_case_has_a_golden_file() -> None:
    assert sorted(BY_NAME) == sorted(c.name for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_requests_match_dspy(case: ReactCase) -> None:
    requests, trajectory = _run(case)
    golden = BY_NAME[case.name]
    assert len(requests) == len(golden["requests"])
    for i, (ours, theirs) in enumerate(zip(requests, golden["requests"], strict=True)):
        assert ours == theirs, f"request {i} differs"
    assert trajectory == golden["trajectory"]


def _call_tools_signature() -> type[dspex.Signature]:
    return dspex.Signature(
        {
            "question": (str, dspex.InputField()),
            "tools": (list[dspex.Tool], dspex.InputField()),
            "outputs": (dspex.ToolCalls, dspex.OutputField()),
        }
    )


@pytest.mark.parametrize("adapter", [dspex.ChatAdapter(), dspex.JSONAdapter()], ids=repr)
def test_tool_calls_prompt_matches_dspy(adapter: dspex.Adapter) -> None:
    tools = [dspex.Tool(TOOLS[name]) for name in cases.TOOLCALLS_TOOLS]
    demo = dspex.Example(
        question=cases.TOOLCALLS_DEMO["question"],
        tools=tools,
        outputs=dspex.ToolCalls.from_dict_list(cases.TOOLCALLS_DEMO["tool_calls"]),
    )
    inputs = {"question": cases.TOOLCALLS_QUESTION, "tools": tools}
    messages = adapter.format(_call_tools_signature(), [demo], inputs)
    assert messages == TOOLCALLS[type(adapter).__name__]


@pytest.mark.parametrize("row", TOOLCALLS["parse"], ids=lambda r: r["completion"][:40])
def test_tool_calls_parse_as_dspy(row: dict[str, Any]) -> None:
    adapter = dspex.JSONAdapter() if row["adapter"] == "JSONAdapter" else dspex.ChatAdapter()
    if "error" in row:
        with pytest.raises(dspex.ParseError):
            adapter.parse(_call_tools_signature(), row["completion"])
        return
    value = adapter.parse(_call_tools_signature(), row["completion"])["outputs"]
    assert isinstance(value, dspex.ToolCalls)
    assert [c.model_dump() | {"id": c.id} for c in value.tool_calls] == row["result"]


def test_a_react_program_saved_by_dspy_loads(tmp_path: Path) -> None:
    path = tmp_path / "react.json"
    path.write_text(json.dumps(GOLDEN["saved_program"]), encoding="utf-8")
    react = dspex.ReAct("question -> answer", tools=[TOOLS["add"]]).load(path)
    assert react.react.demos[0].toDict() == cases.SAVED_REACT_DEMO
    assert react.extract.predict.signature.instructions == cases.SAVED_EXTRACT_INSTRUCTIONS
