"""Predict and ChainOfThought as DSPy's own tests use them (tests/predict/test_predict.py,
test_chain_of_thought.py in DSPy), written against dspex."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pydantic

import dspex
from dspex.testing import DummyLM


def test_a_string_signature_gets_dspys_default_instructions() -> None:
    predict = dspex.Predict("input1, input2 -> output")
    expected = "Given the fields `input1`, `input2`, produce the fields `output`."
    assert predict.signature.instructions == expected
    assert (
        predict.signature.instructions == dspex.Signature("input1, input2 -> output").instructions
    )


def test_reset_clears_the_lm_and_the_learned_state() -> None:
    predict = dspex.Predict("input -> output")
    predict.lm = DummyLM([])
    predict.demos = [dspex.Example(input="a", output="b")]
    predict.traces = ["trace"]
    predict.train = ["train"]
    predict.reset()
    assert predict.lm is None
    assert predict.demos == [] and predict.traces == [] and predict.train == []


def test_call_with_the_configured_lm() -> None:
    with dspex.context(lm=DummyLM([{"output": "test output"}])):
        assert dspex.Predict("input -> output")(input="test input").output == "test output"


def test_instructions_and_demos_survive_dump_and_load_state() -> None:
    class Translate(dspex.Signature):
        """Translate content from a language to English."""

        content: str = dspex.InputField()
        language: str = dspex.InputField()
        translation: str = dspex.OutputField()

    original = dspex.Predict(Translate.with_instructions("original instructions"))
    original.demos = [
        dspex.Example(
            content="¿Qué tal?", language="SPANISH", translation="Hello there"
        ).with_inputs("content", "language")
    ]
    state = json.loads(json.dumps(original.dump_state()))
    assert state["predictors"]["self"]["demos"][0]["content"] == "¿Qué tal?"

    loaded = dspex.Predict(Translate.with_instructions("new instructions"))
    loaded.load_state(state)
    assert loaded.signature.instructions == "original instructions"
    assert loaded.demos[0]["content"] == "¿Qué tal?"


def test_typed_demos_survive_dump_and_load_state() -> None:
    class Pair(pydantic.BaseModel):
        content: str
        language: str

    class Typed(dspex.Signature):
        """Translate."""

        pair: Pair = dspex.InputField()
        translation: str = dspex.OutputField()

    original = dspex.Predict(Typed)
    original.demos = [
        dspex.Example(pair=Pair(content="Hola", language="es"), translation="Hi").with_inputs(
            "pair"
        )
    ]
    state = json.loads(json.dumps(original.dump_state()))
    loaded = dspex.Predict(Typed)
    loaded.load_state(state)
    assert loaded.demos[0]["pair"]["content"] == "Hola"  # types need not survive, values do


def test_field_descriptions_follow_the_saved_file(tmp_path: Path) -> None:
    class Original(dspex.Signature):
        """I am just an instruction."""

        sentence = dspex.InputField(desc="I am an innocent input!")
        sentiment = dspex.OutputField()

    class Other(dspex.Signature):
        """I am not a pure instruction."""

        sentence = dspex.InputField(desc="I am a malicious input!")
        sentiment = dspex.OutputField(desc="I am a malicious output!", prefix="I am a prefix!")

    original = dspex.Predict(Original)
    original.save(tmp_path / "p.json")
    other = dspex.Predict(Other)
    assert other.signature.dump_state() != original.signature.dump_state()
    other.load(tmp_path / "p.json")
    assert other.signature.dump_state() == original.signature.dump_state()


def test_several_outputs() -> None:
    lm = DummyLM([{"answer1": "my first answer", "answer2": "my second answer"}])
    result = dspex.Predict("question -> answer1, answer2")(question="What is 1+1?", lm=lm)
    assert (result.answer1, result.answer2) == ("my first answer", "my second answer")


def test_config_management() -> None:
    predict = dspex.Predict("input -> output")
    predict.update_config(new_key="value")
    assert predict.get_config()["new_key"] == "value"


def test_n_completions() -> None:
    lm = DummyLM(
        [
            {"answer1": "my 0 answer", "answer2": "my 2 answer"},
            {"answer1": "my 1 answer", "answer2": "my 3 answer"},
        ]
    )
    results = dspex.Predict("question -> answer1, answer2", n=2)(question="1+1?", lm=lm)
    assert list(results.completions.answer1) == ["my 0 answer", "my 1 answer"]
    assert list(results.completions.answer2) == ["my 2 answer", "my 3 answer"]
    assert results.answer1 == "my 0 answer"  # the first completion is the prediction


def test_named_predictors_also_after_deepcopy() -> None:
    class MyModule(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = dspex.Predict("question -> answer")

    program = MyModule()
    assert program.named_predictors() == [("inner", program.inner)]
    clone = copy.deepcopy(program)
    assert clone.named_predictors() == [("inner", clone.inner)]


def test_a_signature_with_only_outputs() -> None:
    class OutputOnly(dspex.Signature):
        output = dspex.OutputField()

    lm = DummyLM([{"output": "short answer"}])
    assert dspex.Predict(OutputOnly)(lm=lm).output == "short answer"


def test_typed_outputs_are_parsed() -> None:
    class Answer(pydantic.BaseModel):
        value: int
        unit: str

    class Typed(dspex.Signature):
        question: str = dspex.InputField()
        count: int = dspex.OutputField()
        tags: list[str] = dspex.OutputField()
        answer: Answer = dspex.OutputField()

    lm = DummyLM([{"count": "3", "tags": '["a", "b"]', "answer": '{"value": 4, "unit": "kg"}'}])
    out = dspex.Predict(Typed)(question="?", lm=lm)
    assert out.count == 3 and out.tags == ["a", "b"] and out.answer == Answer(value=4, unit="kg")


def test_chain_of_thought_adds_reasoning_before_the_outputs() -> None:
    cot = dspex.ChainOfThought("question -> answer")
    assert list(cot.predict.signature.output_fields) == ["reasoning", "answer"]
    lm = DummyLM([{"reasoning": "find the number after 1", "answer": "2"}])
    with dspex.context(lm=lm):
        result = cot(question="What is 1+1?")
    assert result.answer == "2"
    assert result.reasoning == "find the number after 1"


def test_async_predict_and_chain_of_thought() -> None:
    lm = DummyLM([{"answer": "2"}, {"reasoning": "r", "answer": "3"}])

    async def run() -> tuple[str, str]:
        with dspex.context(lm=lm):
            a = await dspex.Predict("question -> answer").acall(question="1+1?")
            b = await dspex.ChainOfThought("question -> answer").acall(question="1+2?")
        return a.answer, b.answer

    assert asyncio.run(run()) == ("2", "3")
