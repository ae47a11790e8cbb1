"""Host functions are callable from the sandbox only when passed explicitly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dspex.sandbox import CodeExecutionError, PythonInterpreter

CAPITALS = {"France": "Paris", "Japan": "Tokyo"}
calls: list[str] = []


def lookup(country: str) -> str:
    calls.append(country)
    return CAPITALS[country]


def stats(values: list[float], *, scale: float = 1.0) -> dict[str, float]:
    return {"total": sum(values) * scale, "count": len(values)}


def never_passed() -> str:
    raise AssertionError("a tool that was not passed ran")


@pytest.fixture(scope="module")
def with_tools(sandbox_cache: Path) -> Iterator[PythonInterpreter]:
    tools = {"lookup": lookup, "stats": stats}
    with PythonInterpreter(tools=tools, cache_dir=sandbox_cache) as interpreter:
        yield interpreter


def test_a_tool_passed_in_is_callable_with_json_arguments(with_tools: PythonInterpreter) -> None:
    calls.clear()
    assert with_tools("lookup('France') + ' / ' + lookup(country='Japan')") == "Paris / Tokyo"
    assert calls == ["France", "Japan"]
    assert with_tools("stats([1, 2.5], scale=2)") == {"total": 7.0, "count": 2}


def test_a_failing_tool_raises_tool_error_inside_the_sandbox(
    with_tools: PythonInterpreter,
) -> None:
    code = "try:\n    lookup('Atlantis')\nexcept ToolError as exc:\n    caught = str(exc)\ncaught"
    assert with_tools(code) == "lookup: KeyError: 'Atlantis'"
    with pytest.raises(CodeExecutionError) as uncaught:
        with_tools("lookup('Atlantis')")
    assert uncaught.value.error_type == "ToolError"


def test_a_function_not_passed_is_not_callable(with_tools: PythonInterpreter) -> None:
    with pytest.raises(CodeExecutionError, match="NameError: name 'never_passed'"):
        with_tools("never_passed()")
    # Even asking the host directly, past the generated stubs: the host runs only the tools
    # it was given, looked up by the name the sandbox sends.
    forged = (
        "import _dspex_host, json\n"
        "json.loads(_dspex_host.call_tool('never_passed', json.dumps({'args': [], 'kwargs': {}})))"
    )
    reply = with_tools(forged)
    assert reply["ok"] is False and "no tool named 'never_passed'" in reply["error"]


def test_an_interpreter_without_tools_has_none(interpreter: PythonInterpreter) -> None:
    with pytest.raises(CodeExecutionError, match="NameError: name 'lookup'"):
        interpreter("lookup('France')")
