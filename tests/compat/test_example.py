"""``dspex.Example`` behaves as DSPy's ``Example`` (ported from the behaviours DSPy's
``tests/primitives/test_example.py`` checks)."""

import copy
import json
import pickle

import pydantic
import pytest

import dspex
from dspex import Example
from dspex.testing import DummyLM


class Turn(pydantic.BaseModel):
    question: str
    answer: str


def test_initialization_from_fields_an_example_or_a_dict() -> None:
    example = Example(a=1, b=2)
    assert (example.a, example.b) == (1, 2)
    from_example = Example(base=example, c=3)
    assert (from_example.a, from_example.b, from_example.c) == (1, 2, 3)
    from_dict = Example(base={"a": 1, "b": 2}, c=3)
    assert from_dict.toDict() == {"a": 1, "b": 2, "c": 3}
    assert Example({"a": 1}).a == 1  # positional base too


def test_construction_from_an_example_keeps_its_inputs() -> None:
    base = Example(q="?", a="!").with_inputs("q")
    assert Example(base).inputs().toDict() == {"q": "?"}
    assert Example(base=base, extra=1).labels().toDict() == {"a": "!", "extra": 1}


def test_fields_are_set_and_deleted_as_items_and_attributes() -> None:
    example = Example()
    example["a"] = 1
    assert example["a"] == 1
    example.a = 2
    assert example.a == 2 and example["a"] == 2
    example.b = 3
    del example["a"]
    with pytest.raises(AttributeError):
        _ = example.a
    del example.b
    assert "b" not in example
    with pytest.raises(KeyError):
        _ = example["b"]


def test_mutation_leaves_copies_and_derived_examples_alone() -> None:
    example = Example(q="?", a="!").with_inputs("q")
    copied = example.copy()
    inputs = example.inputs()
    example.q = "changed"
    example["a"] = "changed"
    assert (copied.q, copied.a, inputs.q) == ("?", "!", "?")


def test_len_keys_values_items_hide_dspy_fields() -> None:
    example = Example(a=1, b=2, dspy_hidden=3)
    assert len(example) == 2
    assert set(example.keys()) == {"a", "b"}
    assert example.keys() == ["a", "b"]
    assert 1 in example.values() and 3 not in example.values()
    assert ("b", 2) in example.items()
    assert "dspy_hidden" in example.keys(include_dspy=True)
    assert dict(example) == {"a": 1, "b": 2}
    assert example.toDict() == {"a": 1, "b": 2, "dspy_hidden": 3}


def test_repr_and_str() -> None:
    example = Example(a=1)
    assert repr(example) == "Example({'a': 1}) (input_keys=None)"
    assert str(example) == "Example({'a': 1}) (input_keys=None)"
    assert repr(example.with_inputs("a")) == "Example({'a': 1}) (input_keys={'a'})"


def test_equality_and_hash_follow_the_fields() -> None:
    example1, example2 = Example(a=1, b=2), Example(a=1, b=2)
    assert example1 == example2
    assert example1 != ""
    assert hash(example1) == hash(example2)
    assert example1 == example2.with_inputs("a")  # which fields are inputs does not matter
    assert Example(a=[1, 2]) == Example(a=[1, 2]) and hash(Example(a=[1, 2])) is not None


def test_get() -> None:
    example = Example(a=1, b=2)
    assert example.get("a") == 1
    assert example.get("c", "default") == "default"
    assert "a" in example and "c" not in example


def test_with_inputs_inputs_labels() -> None:
    example = Example(a=1, b=2).with_inputs("a")
    assert example._input_keys == {"a"}
    assert example.inputs().toDict() == {"a": 1}
    assert example.labels().toDict() == {"b": 2}
    assert example.inputs().keys() == ["a"]
    assert example.labels().keys() == ["b"]
    original = Example(a=1, b=2)
    original.with_inputs("a")
    assert original._input_keys is None  # with_inputs returns a copy


def test_with_inputs_may_name_an_absent_optional_input() -> None:
    example = Example(q="?", a="!").with_inputs("q", "context")
    assert example.inputs().toDict() == {"q": "?"}


def test_inputs_without_with_inputs_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="with_inputs"):
        Example(a=1).inputs()


def test_copy_and_without() -> None:
    example = Example(a=1, b=2)
    copied = example.copy(c=3)
    assert (copied.a, copied.c) == (1, 3)
    without_a = copied.without("a")
    with pytest.raises(AttributeError):
        _ = without_a.a
    assert "a" in copied


def test_to_dict_converts_nested_values() -> None:
    example = Example(a=1, b=2)
    assert example.toDict() == {"a": 1, "b": 2}
    nested = Example(
        turns=[Turn(question="q1", answer="a1")],
        inner=Example(x=1),
        mapping={"m": Turn(question="q2", answer="a2")},
    )
    result = nested.toDict()
    assert result == {
        "turns": [{"question": "q1", "answer": "a1"}],
        "inner": {"x": 1},
        "mapping": {"m": {"question": "q2", "answer": "a2"}},
    }
    assert json.loads(json.dumps(result)) == result


def test_copies_pickles_and_deep_copies_keep_fields_and_inputs() -> None:
    example = Example(q="?", a=["x"]).with_inputs("q")
    for other in (copy.copy(example), copy.deepcopy(example), pickle.loads(pickle.dumps(example))):
        assert other == example
        assert other.inputs().toDict() == {"q": "?"}
    deep = copy.deepcopy(example)
    deep.a.append("y")
    assert example.a == ["x"]


def test_a_method_name_stays_the_method_on_examples() -> None:
    # Datasets often have a "labels" column: the framework still calls ex.labels().
    example = Example(text="t", labels="pos").with_inputs("text")
    assert example.labels().toDict() == {"labels": "pos"}
    assert example["labels"] == "pos"


def test_examples_work_as_program_inputs() -> None:
    example = Example(question="2+2?", answer="4").with_inputs("question")
    lm = DummyLM([{"answer": "4"}])
    pred = dspex.Predict("question -> answer", lm=lm)(**example.inputs())
    assert pred.answer == example.answer
