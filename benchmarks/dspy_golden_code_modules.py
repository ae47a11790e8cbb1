"""Write ``tests/agents/golden/code_modules.json``: the LM requests DSPy's ProgramOfThought and
CodeAct send.

Run with the benchmark virtualenv, where DSPy is installed (never a dspex dependency)::

    .venv-bench/bin/python benchmarks/dspy_golden_code_modules.py            # (re)write
    .venv-bench/bin/python benchmarks/dspy_golden_code_modules.py --check    # exit 1 if stale

Each case runs ``dspy.ProgramOfThought`` or ``dspy.CodeAct`` with DSPy's ``DummyLM`` answering
from the case's script. No code runs here: DSPy's interpreter is replaced by a scripted one
that returns, for each snippet, what dspex's sandbox gives for it (or raises the error it
raises), so ``tests/agents/test_program_of_thought.py`` and ``test_code_act.py`` can run the
same case with the real sandbox and compare every request. The case itself is written to the
file too (the tests read it from there). No dspex import.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "agents" / "golden"
OUT = GOLDEN / "code_modules.json"


def _load_tools() -> dict[str, Any]:
    """The plain tool functions of ``tests/agents/golden/cases.py`` (shared with ReAct's)."""
    spec = importlib.util.spec_from_file_location("react_golden_cases", GOLDEN / "cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    tools: dict[str, Any] = module.TOOLS
    return tools


# Each case: the module, its signature, the LM's scripted answers and, per executed snippet,
# what the sandbox returns ({"final": ...} for SUBMIT, {"value": ...}) or raises ({"error"}).
CASES: list[dict[str, Any]] = [
    {
        "name": "pot_submit",
        "module": "ProgramOfThought",
        "adapter": "ChatAdapter",
        "spec": "question -> answer: int",
        "instructions": None,
        "inputs": {"question": "What is 2 to the power of 100?"},
        "max_iters": 3,
        "answers": [
            {
                "reasoning": "Python integers are exact, so compute the power directly.",
                "generated_code": "```python\nresult = 2**100\nSUBMIT({'answer': result})\n```",
            },
            {"reasoning": "The code computed it.", "answer": "1267650600228229401496703205376"},
        ],
        "executions": [{"final": {"answer": 1267650600228229401496703205376}}],
    },
    {
        "name": "pot_retry",
        "module": "ProgramOfThought",
        "adapter": "ChatAdapter",
        "spec": "problem: str, numbers: list[int] -> total: int, note: str",
        "instructions": "Add up the numbers the problem names.",
        "inputs": {"problem": "Sum the squares.", "numbers": [3, 4, 12]},
        "max_iters": 3,
        "answers": [
            {"reasoning": "Use a helper.", "generated_code": "print(sum_squares(numbers))"},
            {
                "reasoning": "The helper does not exist; write it inline.",
                "generated_code": "```python\ntotal = sum(n * n for n in [3, 4, 12])\n```",
            },
            {"reasoning": "It printed 169.", "total": "169", "note": "3*3 + 4*4 + 12*12"},
        ],
        "executions": [
            {"error": "NameError: name 'sum_squares' is not defined"},
            {"value": 169},
        ],
    },
    {
        "name": "pot_json",
        "module": "ProgramOfThought",
        "adapter": "JSONAdapter",
        "spec": "question -> answer: float",
        "instructions": None,
        "inputs": {"question": "What is 7 divided by 8?"},
        "max_iters": 2,
        "answers": [
            {"reasoning": "Divide.", "generated_code": "SUBMIT({'answer': 7 / 8})"},
            {"reasoning": "0.875", "answer": 0.875},
        ],
        "executions": [{"final": {"answer": 0.875}}],
    },
    {
        "name": "codeact_tools",
        "module": "CodeAct",
        "adapter": "ChatAdapter",
        "spec": "question -> answer",
        "instructions": None,
        "tools": ["add", "lookup"],
        "inputs": {"question": "What is 2 + 3, and how many people live in Paris?"},
        "max_iters": 5,
        "answers": [
            {"generated_code": "```python\nprint(add(2, 3))\n```", "finished": "False"},
            {"generated_code": "print(population)", "finished": "False"},
            {"generated_code": "", "finished": "False"},
            {
                "generated_code": "```python\nprint(lookup('Paris', 'population'))\n```",
                "finished": "True",
            },
            {"reasoning": "Both are known.", "answer": "5; 2102650 people"},
        ],
        "executions": [
            {"value": "5\n"},
            {"error": "NameError: name 'population' is not defined"},
            {"value": "{'city': 'Paris', 'population': 2102650}\n"},
        ],
    },
]


class ScriptedInterpreter:
    """DSPy's ``CodeInterpreter`` protocol, answering each snippet from the case's script.
    DSPy's CodeAct first defines every tool from its source; those calls return nothing."""

    def __init__(self, executions: list[dict[str, Any]], tools: dict[str, Any]) -> None:
        self._executions = list(executions)
        self._tools = tools
        self.codes: list[str] = []

    @property
    def tools(self) -> dict[str, Any]:
        return self._tools

    def start(self) -> None:
        pass

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        from dspy.primitives.code_interpreter import CodeExecutionError, FinalOutput

        if code.startswith(("def ", "async def ")):
            return None
        self.codes.append(code)
        step = self._executions.pop(0)
        if "error" in step:
            raise CodeExecutionError(step["error"])
        if "final" in step:
            return FinalOutput(step["final"])
        return step["value"]

    def shutdown(self) -> None:
        pass


def run_case(case: dict[str, Any], tools: dict[str, Any]) -> dict[str, Any]:
    import dspy
    from dspy.utils.dummies import DummyLM

    adapter = dspy.JSONAdapter() if case["adapter"] == "JSONAdapter" else dspy.ChatAdapter()
    lm = DummyLM([dict(a) for a in case["answers"]], adapter=adapter)
    interpreter = ScriptedInterpreter(case["executions"], {})
    signature = dspy.Signature(case["spec"], case["instructions"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # both are deprecated in DSPy 3.4
        if case["module"] == "CodeAct":
            program: Any = dspy.CodeAct(
                signature,
                tools=[tools[name] for name in case["tools"]],
                max_iters=case["max_iters"],
                interpreter_factory=lambda: interpreter,
            )
        else:
            program = dspy.ProgramOfThought(
                signature, max_iters=case["max_iters"], interpreter_factory=lambda: interpreter
            )
    with dspy.context(lm=lm, adapter=adapter):
        pred = program(**case["inputs"])
    outputs = {k: v for k, v in pred.items() if k != "trajectory"}
    return {
        **case,
        "dspy": dspy.__version__,
        "predictors": [name for name, _ in program.named_predictors()],
        "codes": interpreter.codes,
        "requests": [entry["messages"] for entry in lm.history],
        "outputs": json.loads(json.dumps(outputs, default=str)),
        "trajectory": json.loads(json.dumps(pred.get("trajectory"), default=str)),
    }


def render() -> str:
    tools = _load_tools()
    rows = [run_case(case, tools) for case in CASES]
    return json.dumps({"cases": rows}, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file would change")
    args = parser.parse_args()
    text = render()
    current = OUT.read_text(encoding="utf-8") if OUT.exists() else None
    if args.check:
        if current != text:
            print(f"stale: {OUT.name}")
            return 1
        return 0
    if current != text:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
