"""Write ``tests/agents/golden/react.json``: the LM requests DSPy's ReAct sends.

Run with the benchmark virtualenv, where DSPy is installed (never a dspex dependency)::

    .venv-bench/bin/python benchmarks/dspy_golden_react.py            # (re)write the file
    .venv-bench/bin/python benchmarks/dspy_golden_react.py --check    # exit 1 if stale

For each case of ``tests/agents/golden/cases.py`` it runs ``dspy.ReAct`` with DSPy's
``DummyLM`` answering from the case's script and records every request's messages, which
``tests/agents/test_golden_react.py`` compares with dspex's; it also records how a
``ToolCalls`` output is written and parsed, and what ``save`` writes for a ReAct program.
No dspex import.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "agents" / "golden"


def _load_cases() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("react_golden_cases", GOLDEN / "cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


cases = _load_cases()


def run_case(case: Any) -> dict[str, Any]:
    import dspy
    from dspy.utils.dummies import DummyLM

    adapter = dspy.JSONAdapter() if case.adapter == "JSONAdapter" else dspy.ChatAdapter()
    lm = DummyLM([dict(a) for a in case.answers], adapter=adapter)
    react = dspy.ReAct(
        dspy.Signature(case.spec, case.instructions),
        tools=[cases.TOOLS[name] for name in case.tools],
        max_iters=case.max_iters,
    )
    with dspy.context(lm=lm, adapter=adapter, allow_tool_async_sync_conversion=True):
        pred = react(**case.inputs)
    return {
        "case": case.name,
        "dspy": dspy.__version__,
        "requests": [entry["messages"] for entry in lm.history],
        "trajectory": json.loads(json.dumps(pred.trajectory, default=str)),
    }


def toolcalls() -> dict[str, Any]:
    """How a ``tools: list[Tool]`` input and a ``ToolCalls`` output are written and parsed."""
    import dspy

    fields = {
        "question": (str, dspy.InputField()),
        "tools": (list[dspy.Tool], dspy.InputField()),
        "outputs": (dspy.ToolCalls, dspy.OutputField()),
    }
    call_tools = dspy.Signature(fields)

    tools = [dspy.Tool(cases.TOOLS[name]) for name in cases.TOOLCALLS_TOOLS]
    demo = dspy.Example(
        question=cases.TOOLCALLS_DEMO["question"],
        tools=tools,
        outputs=dspy.ToolCalls.from_dict_list(cases.TOOLCALLS_DEMO["tool_calls"]),
    )
    inputs = {"question": cases.TOOLCALLS_QUESTION, "tools": tools}
    out: dict[str, Any] = {"dspy": dspy.__version__}
    adapters = {"ChatAdapter": dspy.ChatAdapter(), "JSONAdapter": dspy.JSONAdapter()}
    for name, adapter in adapters.items():
        out[name] = adapter.format(call_tools, [demo], dict(inputs))
    parsed = []
    for name, completion in cases.TOOLCALLS_COMPLETIONS:
        row: dict[str, Any] = {"adapter": name, "completion": completion}
        try:
            value = adapters[name].parse(call_tools, completion)["outputs"]
            row["result"] = [{"id": c.id, "name": c.name, "args": c.args} for c in value.tool_calls]
        except Exception as e:  # DSPy's verdict is data here: which answers it refuses
            row["error"] = type(e).__name__
        parsed.append(row)
    out["parse"] = parsed
    return out


def saved_program() -> dict[str, Any]:
    """What ``dspy_react.save(path)`` writes for a ReAct with a demo and new instructions."""
    import tempfile

    import dspy

    react = dspy.ReAct("question -> answer", tools=[cases.TOOLS["add"]])
    react.react.demos = [dspy.Example(**cases.SAVED_REACT_DEMO)]
    extract = react.extract.predict
    extract.signature = extract.signature.with_instructions(cases.SAVED_EXTRACT_INSTRUCTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "react.json"
        react.save(str(path))
        saved: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return saved


def render() -> str:
    value = {
        "react": [run_case(c) for c in cases.CASES],
        "toolcalls": toolcalls(),
        "saved_program": saved_program(),
    }
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file would change")
    args = parser.parse_args()
    path = GOLDEN / "react.json"
    text = render()
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if args.check:
        if current != text:
            print("stale: react.json")
            return 1
        return 0
    if current != text:
        path.write_text(text, encoding="utf-8")
        print("wrote react.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
