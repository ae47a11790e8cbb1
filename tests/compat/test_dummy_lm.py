"""``dspex.testing.DummyLM`` takes DSPy's ``DummyLM`` arguments (its three modes, as DSPy's
docstring and tests use them); unlike DSPy's, it raises instead of inventing an answer."""

import json

import pytest

import dspex
from dspex.errors import ScriptExhaustedError
from dspex.testing import DummyLM


def test_a_list_of_dicts_answers_in_order() -> None:
    lm = DummyLM([{"answer": "red"}, {"answer": "blue"}])
    predict = dspex.Predict("question -> answer", lm=lm)
    assert predict(question="What color is the sky?").answer == "red"
    assert predict(question="What color is the sky?").answer == "blue"
    # DSPy answers "No more responses" here; dspex says the script ran out.
    with pytest.raises(ScriptExhaustedError, match="ran out"):
        predict(question="What color is the sky?")


def test_a_dict_answers_by_a_substring_of_the_prompt() -> None:
    lm = DummyLM({"What color is the sky?": {"answer": "blue"}, "grass": {"answer": "green"}})
    dspex.configure(lm=lm)
    predict = dspex.Predict("question -> answer")
    assert predict(question="What color is the sky?").answer == "blue"
    assert predict(question="And the grass?").answer == "green"
    assert predict(question="What color is the sky?").answer == "blue"  # answers are reused
    with pytest.raises(ScriptExhaustedError, match="no answer"):
        predict(question="What color is the sea?")


def test_answers_fill_several_output_fields() -> None:
    lm = DummyLM([{"reasoning": "1 plus 1", "answer": "2"}])
    result = dspex.ChainOfThought("question -> answer", lm=lm)(question="What is 1+1?")
    assert (result.reasoning, result.answer) == ("1 plus 1", "2")


def test_follow_examples_answers_with_a_matching_demo() -> None:
    lm = DummyLM([{"translation": "Bonjour"}], follow_examples=True)
    predict = dspex.Predict("text -> translation", lm=lm)
    predict.demos = [
        dspex.Example(text="Hello", translation="Hola").with_inputs("text"),
        dspex.Example(text="Goodbye", translation="Adiós").with_inputs("text"),
    ]
    assert predict(text="Hello").translation == "Hola"
    assert predict(text="Goodbye").translation == "Adiós"
    assert lm.script.remaining == 1  # a demo answered; the script was not used
    assert predict(text="Good morning").translation == "Bonjour"  # no demo matches


def test_follow_examples_positionally_as_dspy_allows() -> None:
    lm = DummyLM([], True)
    predict = dspex.Predict("question -> answer", lm=lm)
    predict.demos = [dspex.Example(question="What color is the sky?", answer="blue")]
    assert predict(question="What color is the sky?").answer == "blue"
    with pytest.raises(ScriptExhaustedError):
        predict(question="What color is the grass?")


def test_follow_examples_in_a_bootstrapped_program() -> None:
    # DSPy's test_bootstrap_effectiveness: the compiled student answers a training input
    # with its demo's output, although the script's next answer is another.
    lm = DummyLM(
        [{"output": "blue"}, {"output": "Ring-ding-ding-ding-dingeringeding!"}],
        follow_examples=True,
    )
    program = dspex.Predict("input -> output", lm=lm)
    program.demos = [dspex.Example(input="What is the color of the sky?", output="blue")]
    assert program(input="What is the color of the sky?").output == "blue"
    assert program(input="What does the fox say?").output == "blue"  # the script's first


def test_adapter_sets_the_answer_format() -> None:
    lm = DummyLM([{"answer": "4"}], adapter=dspex.JSONAdapter())
    dspex.configure(lm=lm, adapter=dspex.JSONAdapter())
    predict = dspex.Predict("question -> answer")
    assert predict(question="2+2?").answer == "4"
    _, outputs = lm.get_convo(-1)
    assert json.loads(outputs[0]) == {"answer": "4"}
    # Without an adapter, the answer follows the prompt: field sections for ChatAdapter.
    lm = DummyLM([{"answer": "4"}])
    dspex.Predict("question -> answer", lm=lm, adapter=dspex.ChatAdapter())(question="2+2?")
    assert lm.get_convo(-1)[1][0].startswith("[[ ## answer ## ]]")
    # A JSON answer to a ChatAdapter prompt fails to parse, and ChatAdapter retries with
    # JSONAdapter, as in DSPy: the retry takes the next answer.
    lm = DummyLM([{"answer": "4"}, {"answer": "5"}], adapter=dspex.JSONAdapter())
    result = dspex.Predict("question -> answer", lm=lm, adapter=dspex.ChatAdapter())(question="?")
    assert (result.answer, lm.request_count) == ("5", 2)


def test_get_convo_returns_the_messages_and_the_answer() -> None:
    lm = DummyLM([{"answer": "2"}, {"answer": "4"}])
    predict = dspex.Predict("question -> answer", lm=lm)
    predict(question="What is 1+1?")
    predict(question="What is 2+2?")
    messages, outputs = lm.get_convo(0)
    assert messages[0]["role"] == "system"
    assert "What is 1+1?" in messages[-1]["content"]
    assert outputs == ["[[ ## answer ## ]]\n2\n\n[[ ## completed ## ]]"]
    assert "What is 2+2?" in lm.get_convo(-1)[0][-1]["content"]


def test_reasoning_content_is_not_supported() -> None:
    with pytest.raises(ValueError, match="reasoning"):
        DummyLM([{"answer": "4"}], reasoning=True)
