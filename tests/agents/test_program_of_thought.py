"""ProgramOfThought through the public API: the LM is scripted, the code runs for real in the
sandbox (Deno + Pyodide), and the requests match DSPy 3.4's (``golden/code_modules.json``,
written by ``benchmarks/dspy_golden_code_modules.py``; no DSPy import here)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.sandbox import PythonInterpreter, SandboxUnavailableError
from dspex.sandbox._deno import find_deno, find_pyodide, resolve_deno_dir
from dspex.testing import DummyLM

GOLDEN = json.loads((Path(__file__).parent / "golden" / "code_modules.json").read_text("utf-8"))
POT_CASES = [c for c in GOLDEN["cases"] if c["module"] == "ProgramOfThought"]


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
    # Interpreters the module creates itself keep their snapshot under $DSPEX_CACHE_DIR.
    monkeypatch.setenv("DSPEX_CACHE_DIR", str(sandbox_cache))


@pytest.fixture
def interpreter() -> Iterator[PythonInterpreter]:
    with PythonInterpreter(timeout=60) as it:
        yield it


def _requests(lm: DummyLM) -> list[list[dict[str, Any]]]:
    return [[dict(m) for m in entry.messages] for entry in lm.history]


@pytest.mark.parametrize("case", POT_CASES, ids=lambda c: c["name"])
def test_requests_match_dspy(case: dict[str, Any]) -> None:
    adapter = dspex.JSONAdapter() if case["adapter"] == "JSONAdapter" else dspex.ChatAdapter()
    lm = DummyLM([dict(a) for a in case["answers"]], adapter=adapter)
    pot = dspex.ProgramOfThought(
        dspex.Signature(case["spec"], case["instructions"]), max_iters=case["max_iters"]
    )
    with dspex.context(lm=lm, adapter=adapter):
        pred = pot(**case["inputs"])
    # The golden requests carry the outputs DSPy's interpreter was scripted to give; equal
    # requests mean dspex's sandbox really computed them.
    for i, (ours, theirs) in enumerate(zip(_requests(lm), case["requests"], strict=True)):
        assert ours == theirs, f"request {i} differs"
    assert {k: pred[k] for k in case["outputs"]} == case["outputs"]
    assert [name for name, _ in pot.named_predictors()] == case["predictors"]


def test_the_answer_comes_from_running_the_code() -> None:
    expected = 3**200  # far past what an LM would get right without running code
    lm = DummyLM(
        [
            {"reasoning": "Compute.", "generated_code": "SUBMIT({'answer': 3 ** 200})"},
            {"reasoning": "From the output.", "answer": str(expected)},
        ]
    )
    pot = dspex.ProgramOfThought("question -> answer: int")
    with dspex.context(lm=lm):
        pred = pot(question="What is 3 to the 200th?")
    answer_request = lm.history[1].messages[-1]["content"]
    assert f'{{"answer": {expected}}}' in answer_request  # the sandbox's output, exact
    assert pred.answer == expected


def test_an_error_is_fed_back_and_the_regenerated_code_runs() -> None:
    lm = DummyLM(
        [
            {"reasoning": "Divide.", "generated_code": "SUBMIT({'answer': 1 / 0})"},
            {"reasoning": "Guard it.", "generated_code": "SUBMIT({'answer': sum(range(101))})"},
            {"reasoning": "Done.", "answer": "5050"},
        ]
    )
    pot = dspex.ProgramOfThought("question -> answer: int")
    with dspex.context(lm=lm):
        pred = pot(question="Sum 1..100")
    regenerate = lm.history[1].messages[-1]["content"]
    assert "[[ ## previous_code ## ]]\nSUBMIT({'answer': 1 / 0})" in regenerate
    assert "[[ ## error ## ]]\nZeroDivisionError: division by zero" in regenerate
    assert '[[ ## code_output ## ]]\n{"answer": 5050}' in lm.history[2].messages[-1]["content"]
    assert pred.answer == 5050


def test_a_timeout_is_fed_back_and_the_sandbox_recovers() -> None:
    lm = DummyLM(
        [
            {"reasoning": "Loop.", "generated_code": "while True:\n    pass"},
            {"reasoning": "Do not loop.", "generated_code": "SUBMIT({'answer': 6 * 7})"},
            {"reasoning": "Done.", "answer": "42"},
        ]
    )
    pot = dspex.ProgramOfThought(
        "question -> answer: int", interpreter_factory=lambda: PythonInterpreter(timeout=3)
    )
    with dspex.context(lm=lm):
        pred = pot(question="?")
    assert "timeout" in lm.history[1].messages[-1]["content"]
    assert pred.answer == 42


def test_max_iters_exhausted_raises_a_clear_error() -> None:
    lm = DummyLM(
        [
            {"reasoning": "Try.", "generated_code": f"raise ValueError('attempt {i}')"}
            for i in (1, 2)
        ]
    )
    pot = dspex.ProgramOfThought("question -> answer", max_iters=2)
    with dspex.context(lm=lm), pytest.raises(RuntimeError, match="Max hops reached") as info:
        pot(question="?")
    assert isinstance(info.value, dspex.DspexError)
    assert "ValueError: attempt 2" in str(info.value) and "max_iters=2" in str(info.value)
    assert info.value.code == "raise ValueError('attempt 2')"  # type: ignore[attr-defined]
    assert len(lm.history) == 2  # no answer was asked for


def test_a_missing_sandbox_is_raised_not_fed_back(tmp_path: Path) -> None:
    lm = DummyLM([{"reasoning": "r", "generated_code": "SUBMIT({'answer': 1})"}])
    pot = dspex.ProgramOfThought(
        "question -> answer",
        interpreter_factory=lambda: PythonInterpreter(deno=tmp_path / "no-such-deno"),
    )
    with dspex.context(lm=lm), pytest.raises(SandboxUnavailableError):
        pot(question="?")
    assert len(lm.history) == 1  # no regeneration: it is not the code's fault


def test_each_call_closes_the_interpreter_it_created() -> None:
    created: list[PythonInterpreter] = []

    def factory() -> PythonInterpreter:
        created.append(PythonInterpreter())
        return created[-1]

    lm = DummyLM(
        [
            {"reasoning": "r", "generated_code": "SUBMIT({'answer': 'x'})"},
            {"reasoning": "r", "answer": "x"},
        ]
        * 2
    )
    pot = dspex.ProgramOfThought("question -> answer", interpreter_factory=factory)
    with dspex.context(lm=lm):
        pot(question="a")
        asyncio.run(pot.acall(question="b"))
    assert len(created) == 2
    assert all(it.pid is None for it in created)
    with pytest.raises(dspex.UserError, match="closed"):
        created[0].start()


def test_a_caller_owned_interpreter_is_used_and_left_open(interpreter: PythonInterpreter) -> None:
    interpreter("secret = 41")
    lm = DummyLM(
        [
            {"reasoning": "r", "generated_code": "SUBMIT({'answer': secret + 1})"},
            {"reasoning": "r", "answer": "42"},
        ]
        * 2
    )
    per_call = dspex.ProgramOfThought("question -> answer: int")
    owned = dspex.ProgramOfThought("question -> answer: int", interpreter=interpreter)
    with dspex.context(lm=lm):
        assert per_call(interpreter, question="?").answer == 42  # DSPy 3.4's per-call override
        assert asyncio.run(owned.acall(question="?")).answer == 42
    assert interpreter.pid is not None
    assert owned.deepcopy()._interpreter is interpreter  # copies share it, never copy it
    with pytest.raises(dspex.UserError, match="first positional argument"):
        per_call(question="?", interpreter=interpreter)


def test_state_saves_and_loads(tmp_path: Path) -> None:
    pot = dspex.ProgramOfThought("question -> answer: int", max_iters=4)
    pot.code_generate.predict.demos = [
        dspex.Example(question="1+1?", reasoning="Add.", generated_code="SUBMIT({'answer': 2})")
    ]
    path = pot.save(tmp_path / "pot.json")
    fresh = dspex.ProgramOfThought("question -> answer: int")
    fresh.load(path)
    assert fresh.code_generate.predict.demos[0].toDict() == {
        "question": "1+1?",
        "reasoning": "Add.",
        "generated_code": "SUBMIT({'answer': 2})",
    }
    whole = dspex.load(pot.save(tmp_path / "program", save_program=True))
    assert isinstance(whole, dspex.ProgramOfThought) and whole.max_iters == 4
    assert len(whole.code_generate.predict.demos) == 1


def test_invalid_arguments_are_user_errors(interpreter: PythonInterpreter) -> None:
    with pytest.raises(dspex.UserError, match="max_iters"):
        dspex.ProgramOfThought("question -> answer", max_iters=0)
    with pytest.raises(dspex.UserError, match="not both"):
        dspex.ProgramOfThought(
            "question -> answer", interpreter=interpreter, interpreter_factory=PythonInterpreter
        )
    with pytest.raises(dspex.UserError, match="zero-argument callable"):
        dspex.ProgramOfThought("question -> answer", interpreter_factory=interpreter)  # type: ignore[arg-type]
