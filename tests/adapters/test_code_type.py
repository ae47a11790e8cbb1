"""``dspex.Code``: DSPy's code type, written as is and read out of a Markdown fence."""

from __future__ import annotations

import pytest

import dspex
from dspex.testing import DummyLM

JavaCode = dspex.Code["java"]


class Port(dspex.Signature):
    """Port the snippet."""

    snippet: dspex.Code = dspex.InputField()
    fixed: JavaCode = dspex.OutputField()


def test_a_code_output_parses_out_of_its_fence() -> None:
    lm = DummyLM([{"fixed": "```java\nclass A {}\n```"}])
    pred = dspex.Predict(Port, lm=lm)(snippet=dspex.Code(code="class A: pass"))
    assert pred.fixed.code == "class A {}"
    assert type(pred.fixed).language == "java"
    user = lm.requests[-1].messages[-1]["content"]
    assert "[[ ## snippet ## ]]\nclass A: pass\n" in user  # an input is written as is


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("```python\nprint(1)\n```", "print(1)"),
        ("Here it is:\n```\nx = [1, 2]\n```\nDone.", "x = [1, 2]"),
        ("```x = 1```", "x = 1"),
        ("x = 1", "x = 1"),
    ],
)
def test_code_reads_the_first_fence_or_the_whole_text(text: str, code: str) -> None:
    assert dspex.Code.model_validate(text).code == code
    assert dspex.Code.model_validate({"code": text}).code == code


def test_a_json_answer_parses_too() -> None:
    parsed = dspex.JSONAdapter().parse(Port, '{"fixed": "```java\\n[1, 2]\\n```"}')
    assert parsed["fixed"].code == "[1, 2]"


def test_the_language_is_a_type_parameter_described_in_the_prompt() -> None:
    assert dspex.Code["java"] is dspex.Code["java"]
    assert dspex.Code.language == "python"
    system = dspex.ChatAdapter().format(Port, [], {})[0]["content"]
    assert "1. `fixed` (Code_java): \n    Type description of Code_java:" in system
    assert "```java\n{code}\n```\nProgramming language: java" in system


def test_a_value_that_is_not_code_is_refused() -> None:
    with pytest.raises(ValueError, match="`code` field is required"):
        dspex.Code.model_validate({"source": "x"})
    with pytest.raises(ValueError, match="invalid value"):
        dspex.Code.model_validate(42)
