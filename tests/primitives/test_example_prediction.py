"""Example and Prediction: inputs/labels, copies, mutation as in DSPy, completions, usage."""

import copy
import pickle

import pytest

import dspex


def test_inputs_labels_and_copies() -> None:
    ex = dspex.Example(question="q", answer="a", source="s").with_inputs("question")
    assert ex.inputs().to_dict() == {"question": "q"}
    assert ex.labels().to_dict() == {"answer": "a", "source": "s"}
    changed = ex.copy(answer="b")
    assert (ex.answer, changed.answer) == ("a", "b")
    assert changed.input_keys == {"question"}
    assert "source" not in ex.without("source")
    assert dict(ex) == {"question": "q", "answer": "a", "source": "s"}
    assert ex == copy.deepcopy(ex) == pickle.loads(pickle.dumps(ex))


def test_examples_are_mutable_and_errors_say_what_to_do() -> None:
    ex = dspex.Example(question="q")
    ex.question = "other"
    ex["answer"] = "a"
    assert ex.to_dict() == {"question": "other", "answer": "a"}
    del ex["answer"]
    with pytest.raises(dspex.DataError, match="with_inputs"):
        ex.inputs()
    with pytest.raises(AttributeError, match="has no field 'answer'"):
        _ = ex.answer


def test_prediction_completions_and_usage() -> None:
    usage = dspex.Usage(calls=1, prompt_tokens=10, completion_tokens=2, cost=0.5)
    pred = dspex.Prediction.from_completions([{"answer": "1"}, {"answer": "2"}], usage)
    assert pred.answer == "1"
    assert pred.completions.answer == ["1", "2"]
    assert [p.answer for p in pred.completions] == ["1", "2"]
    assert pred.usage.total_tokens == 12
    total = usage + dspex.Usage(calls=1, cache_hits=1, cost=None)
    assert (total.calls, total.cache_hits, total.cost) == (2, 1, 0.5)
    assert dspex.Usage() + dspex.Usage() == dspex.Usage(cost=None)


def test_from_records_declares_inputs() -> None:
    rows = [{"q": "1", "a": "2"}, {"q": "3", "a": "4"}]
    examples = dspex.Example.from_records(rows, input_keys=["q"])
    assert [e.inputs().to_dict() for e in examples] == [{"q": "1"}, {"q": "3"}]
