"""Code runs in the sandbox and values cross as JSON, through the public API."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import dspex
from dspex.sandbox import (
    PYODIDE_VERSION,
    CodeExecutionError,
    CodeInterpreterError,
    CodeSyntaxError,
    FinalOutput,
    PythonInterpreter,
)


def test_code_computes_and_returns_its_last_expression(interpreter: PythonInterpreter) -> None:
    assert interpreter("sum(range(10))") == 45
    assert interpreter.execute("import math\nmath.factorial(20)") == 2432902008176640000
    # A statement last: what the code printed is the result (DSPy's rule).
    assert interpreter("for i in range(3):\n    print(i)") == "0\n1\n2\n"
    run = interpreter.run("print('working'); 6 * 7")
    assert (run.value, run.stdout, run.final) == (42, "working\n", False)


def test_variables_persist_between_calls(interpreter: PythonInterpreter) -> None:
    interpreter("total = 10")
    assert interpreter("total += 5\ntotal") == 15


def test_variables_in_and_results_out_are_json(interpreter: PythonInterpreter) -> None:
    variables = {
        "big": 2**70,
        "ratio": 0.1,
        "text": "naïve ✓",
        "flags": [True, False, None],
        "table": {"a": [1, 2], "b": {"c": "d"}},
    }
    result = interpreter(
        "{'big': big + 1, 'ratio': ratio * 3, 'text': text.upper(), 'flags': flags[::-1],"
        " 'keys': sorted(table), 'pair': (1, 2), 'types': [type(v).__name__ for v in"
        " (big, ratio, text, flags, table)]}",
        variables,
    )
    assert result == {
        "big": 2**70 + 1,  # exact: integers never pass through a JavaScript number
        "ratio": 0.1 * 3,
        "text": "NAÏVE ✓",
        "flags": [None, False, True],
        "keys": ["a", "b"],
        "pair": [1, 2],  # JSON has no tuple
        "types": ["int", "float", "str", "list", "dict"],
    }


def test_values_json_cannot_carry_are_refused_with_a_clear_error(
    interpreter: PythonInterpreter,
) -> None:
    with pytest.raises(dspex.UserError, match="JSON"):
        interpreter("x", {"x": object()})
    with pytest.raises(dspex.UserError, match="not a Python identifier"):
        interpreter("1", {"not valid": 1})
    with pytest.raises(CodeExecutionError, match="not a JSON value") as caught:
        interpreter("{1, 2}")
    assert caught.value.error_type == "TypeError"


def test_an_exception_carries_the_traceback_from_inside_the_sandbox(
    interpreter: PythonInterpreter,
) -> None:
    code = "def ratio(a, b):\n    return a / b\n\nprint('before')\nratio(1, 0)\n"
    with pytest.raises(CodeExecutionError) as caught:
        interpreter(code)
    error = caught.value
    assert isinstance(error, CodeInterpreterError) and isinstance(error, dspex.DspexError)
    assert error.error_type == "ZeroDivisionError"
    assert str(error) == "ZeroDivisionError: division by zero"
    assert error.stdout == "before\n"
    # The sandbox's own traceback: the code's frames and lines, none of the harness's.
    assert "in ratio" in error.traceback and "return a / b" in error.traceback
    assert error.traceback.startswith('Traceback (most recent call last):\n  File "<sandbox-')
    assert "_dspex" not in error.traceback and "runner" not in error.traceback
    # The interpreter carries on after the code's own error.
    assert interpreter("1 + 1") == 2


def test_a_syntax_error_is_also_python_s_syntax_error(interpreter: PythonInterpreter) -> None:
    with pytest.raises(SyntaxError) as caught:
        interpreter("def f(:\n    pass")
    assert isinstance(caught.value, CodeSyntaxError)
    assert "invalid syntax" in caught.value.traceback


def test_submit_ends_the_code_with_its_final_output(interpreter: PythonInterpreter) -> None:
    result = interpreter("answer = 6 * 7\nSUBMIT(answer=answer, unit='m')\nprint('not reached')")
    assert result == FinalOutput({"answer": 42, "unit": "m"})
    assert interpreter("SUBMIT([1, 2])") == FinalOutput([1, 2])


def test_top_level_await_runs_on_the_sandbox_event_loop(interpreter: PythonInterpreter) -> None:
    assert interpreter("import asyncio\nawait asyncio.sleep(0.01)\n'awaited'") == "awaited"


def test_output_fields_shape_submit(sandbox_cache: Path) -> None:
    fields = [{"name": "answer", "type": "int"}, {"name": "reason"}]  # DSPy's form
    with PythonInterpreter(output_fields=fields, cache_dir=sandbox_cache) as interpreter:
        assert interpreter("SUBMIT(3, reason='sum')") == FinalOutput({"answer": 3, "reason": "sum"})
        with pytest.raises(CodeExecutionError, match="missing \\['reason'\\]"):
            interpreter("SUBMIT(answer=3)")


def test_close_stops_the_process_by_its_pid(sandbox_cache: Path) -> None:
    with PythonInterpreter(cache_dir=sandbox_cache) as interpreter:
        interpreter.start()
        pid = interpreter.pid
        assert pid is not None and _running(pid)
        assert interpreter.start_seconds is not None and interpreter.start_seconds > 0
    assert interpreter.pid is None and not _running(pid)
    with pytest.raises(dspex.UserError, match="closed"):
        interpreter("1")


def test_the_runner_loads_the_pyodide_version_the_host_expects() -> None:
    runner = Path(dspex.sandbox.__file__).with_name("runner.js").read_text()
    assert re.findall(r'from "npm:pyodide@([^"]+)"', runner) == [PYODIDE_VERSION]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by anyone) has stopped too.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())
