"""``dspex.Prediction`` and ``Completions`` behave as DSPy's."""

import pytest

import dspex
from dspex import Prediction
from dspex.testing import DummyLM


def test_from_completions_list_and_dict_forms() -> None:
    pred = Prediction.from_completions([{"answer": "a", "n": 1}, {"answer": "b", "n": 2}])
    assert (pred.answer, pred.n) == ("a", 1)
    assert pred.completions.answer == ["a", "b"]
    assert pred.completions["n"] == [1, 2]
    assert len(pred.completions) == 2
    assert pred.completions[1].answer == "b"
    assert [p.answer for p in pred.completions] == ["a", "b"]
    assert "answer" in pred.completions
    assert dict(pred.completions.items()) == {"answer": ["a", "b"], "n": [1, 2]}
    with pytest.raises(IndexError):
        pred.completions[2]
    columns = Prediction.from_completions({"answer": ["x", "y"]})
    assert (columns.answer, columns.completions.answer) == ("x", ["x", "y"])


def test_predict_returns_every_completion() -> None:
    lm = DummyLM([{"answer": "a"}])
    pred = dspex.Predict("question -> answer", lm=lm)(question="?")
    assert pred.answer == "a"
    assert pred.completions.answer == ["a"]


def test_fields_named_like_methods_read_as_attributes() -> None:
    lm = DummyLM([{"items": "x, y", "inputs": "in", "labels": "l", "keys": "k"}])
    qa = dspex.Predict("question -> items, inputs, labels, keys", lm=lm)
    pred = qa(question="?")
    assert (pred.items, pred.inputs, pred.labels) == ("x, y", "in", "l")
    assert pred["keys"] == "k"
    # `keys` stays the method: dict(pred) and f(**pred) need it.
    assert dict(pred) == {"items": "x, y", "inputs": "in", "labels": "l", "keys": "k"}
    assert (lambda **kw: kw)(**pred)["items"] == "x, y"


def test_get_lm_usage_names_the_model() -> None:
    lm = DummyLM([{"answer": "a"}])
    pred = dspex.Predict("question -> answer", lm=lm)(question="?")
    usage = pred.get_lm_usage()
    assert usage is not None and set(usage) == {lm.model}
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= set(usage[lm.model])
    assert Prediction(answer="a").get_lm_usage() is None


def test_a_module_call_carries_the_usage_of_all_its_lm_calls() -> None:
    class TwoSteps(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = dspex.Predict("question -> draft")
            self.second = dspex.Predict("question, draft -> answer")

        def forward(self, question: str) -> Prediction:
            draft = self.first(question=question).draft
            return self.second(question=question, draft=draft)

    lm = DummyLM([{"draft": "d"}, {"answer": "a"}])
    with dspex.context(lm=lm):
        pred = TwoSteps()(question="?")
    assert pred.answer == "a"
    assert pred.usage.calls == 2
    usage = pred.get_lm_usage()
    assert usage is not None and usage[lm.model]["calls"] == 2


def test_set_lm_usage() -> None:
    pred = Prediction(answer="a")
    pred.set_lm_usage({"m": {"prompt_tokens": 3, "completion_tokens": 2}})
    assert pred.get_lm_usage() == {
        "m": {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "calls": 0,
            "cache_hits": 0,
            "cost": None,
        }
    }


def test_a_prediction_with_a_score_is_a_number() -> None:
    a, b = Prediction(score=0.5), Prediction(score=1.0)
    assert float(a) == 0.5
    assert a + 1 == 1.5 and 1 + a == 1.5 and a + b == 1.5
    assert b / 2 == 0.5 and 1 / b == 1.0
    assert a < b and b > a and a <= 0.5 and b >= 1
    assert sum([a, b]) == 1.5
    with pytest.raises(ValueError, match="score"):
        float(Prediction(answer="x"))
    with pytest.raises(TypeError):
        _ = a + "x"


def test_repr() -> None:
    assert repr(Prediction(answer="a")) == "Prediction(\n    answer='a'\n)"
    many = Prediction.from_completions([{"answer": "a"}, {"answer": "b"}])
    assert repr(many).endswith("(1 completions omitted)")


def test_predictions_are_examples() -> None:
    pred = Prediction(answer="a")
    assert isinstance(pred, dspex.Example)
    pred.answer = "b"
    pred["extra"] = 1
    assert pred.toDict() == {"answer": "b", "extra": 1}
    assert pred == dspex.Example(answer="b", extra=1)


def test_setting_a_field_named_like_a_method_sets_the_field() -> None:
    pred = Prediction(items="a")
    pred.items = "b"
    assert pred.items == "b" and pred["items"] == "b"
    example = dspex.Example(text="t")
    example.labels = "pos"
    assert example["labels"] == "pos"
    assert example.labels().toDict() == {"text": "t", "labels": "pos"}
