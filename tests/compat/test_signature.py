"""Signatures behave as DSPy's (ported from the behaviours DSPy's
``tests/signatures/test_signature.py``, ``test_custom_types.py`` and
``test_reserved_names.py`` check)."""

import datetime
import enum
from pathlib import Path
from types import UnionType
from typing import Any, Optional, Union

import pydantic
import pytest

import dspex
from dspex import InputField, OutputField, Signature
from dspex.testing import DummyLM


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Address(pydantic.BaseModel):
    street: str
    number: int


def test_field_types_and_untyped_fields_are_str() -> None:
    class TestSignature(Signature):
        """Instructions"""

        input1: str = InputField()
        input2: int = InputField()
        output1: list[str] = OutputField()
        output2 = OutputField()

    assert TestSignature.instructions == "Instructions"
    assert TestSignature.input_fields["input1"].annotation is str
    assert TestSignature.input_fields["input2"].annotation is int
    assert TestSignature.output_fields["output1"].annotation == list[str]
    assert TestSignature.output_fields["output2"].annotation is str


def test_a_field_without_input_or_output_field_is_a_type_error() -> None:
    with pytest.raises(TypeError):

        class Bare(Signature):
            input1: str

    with pytest.raises(TypeError):

        class PlainPydantic(Signature):
            input1: str = pydantic.Field()


def test_prefixes_and_descs_as_dspy_describes_them() -> None:
    class TestSignature(Signature):
        input = InputField(prefix="Modified:")
        output = OutputField()

    assert TestSignature.input_fields["input"].json_schema_extra["prefix"] == "Modified:"
    assert TestSignature.output_fields["output"].json_schema_extra["prefix"] == "Output:"
    assert TestSignature.output_fields["output"].json_schema_extra["desc"] == "${output}"
    assert TestSignature.input_fields["input"].json_schema_extra["__dspy_field_type"] == "input"


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("someAttributeName42IsCool", "Some Attribute Name 42 Is Cool"),
        ("version2Update", "Version 2 Update"),
        ("modelT45Enhanced", "Model T 45 Enhanced"),
        ("some_attribute_name", "Some Attribute Name"),
        ("URLAddress", "URL Address"),
        ("isHTTPSecure", "Is HTTP Secure"),
    ],
)
def test_inferred_prefixes(name: str, prefix: str) -> None:
    sig = Signature(f"{name} -> out")
    assert sig.input_fields[name].json_schema_extra["prefix"] == prefix + ":"


def test_string_signatures() -> None:
    signature = Signature("input1, input2 -> output")
    assert list(signature.input_fields) == ["input1", "input2"]
    assert list(signature.output_fields) == ["output"]
    assert signature.signature == "input1, input2 -> output"
    assert signature.__name__ == "StringSignature"
    assert issubclass(signature, Signature)


def test_invalid_strings_are_value_errors() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        Signature("value -> value")
    with pytest.raises(ValueError):
        Signature("")
    with pytest.raises(ValueError):
        Signature("a -> b -> c")


def test_with_instructions_and_append_instructions_make_new_classes() -> None:
    signature1 = Signature("input1, input2 -> output")
    signature2 = signature1.with_instructions("This is a test")
    assert signature2.instructions == "This is a test"
    assert signature1 is not signature2
    assert signature1.instructions != "This is a test"
    signature3 = signature2.append_instructions("More.")
    assert signature3.instructions == "This is a test\n\nMore."


def test_with_updated_fields() -> None:
    signature1 = Signature("input1, input2 -> output")
    signature2 = signature1.with_updated_fields("input1", prefix="Modified:")
    assert signature2.input_fields["input1"].json_schema_extra["prefix"] == "Modified:"
    assert signature1.input_fields["input1"].json_schema_extra["prefix"] == "Input 1:"
    assert signature1 is not signature2
    for key in signature1.fields:
        if key != "input1":
            assert (
                signature1.fields[key].json_schema_extra == signature2.fields[key].json_schema_extra
            )
    assert signature1.instructions == signature2.instructions
    typed = signature1.with_updated_fields("output", int, desc="a number")
    assert typed.output_fields["output"].annotation is int
    assert typed.output_fields["output"].json_schema_extra["desc"] == "a number"


def test_instructions_arguments_and_defaults() -> None:
    assert Signature("input1 -> output1", instructions="This is a test").instructions == (
        "This is a test"
    )
    assert Signature("input1 -> output1", "This is a test").instructions == "This is a test"
    assert (
        Signature("a, b -> c").instructions == "Given the fields `a`, `b`, produce the fields `c`."
    )


def test_multiline_docstrings_are_cleaned() -> None:
    class MySignature(Signature):
        """First line
        Second line
            Third line"""

        output = OutputField()

    assert MySignature.instructions == "First line\nSecond line\n    Third line"


def test_a_signature_may_have_no_inputs() -> None:
    class Haiku(Signature):
        """Write a haiku."""

        haiku = OutputField()

    lm = DummyLM([{"haiku": "short answer"}])
    assert dspex.Predict(Haiku, lm=lm)().haiku == "short answer"


def test_signature_from_a_dict_of_fields() -> None:
    signature = Signature({"input1": InputField(), "input2": InputField(), "output": OutputField()})
    for k in ["input1", "input2", "output"]:
        assert k in signature.fields
        assert signature.fields[k].annotation is str
    typed = Signature(
        {
            "input_str_list": (list[str], InputField()),
            "input_dict_int": (dict[str, int], InputField()),
            "output_tup": (tuple[int, float], OutputField()),
        }
    )
    assert typed.input_fields["input_str_list"].annotation == list[str]
    assert typed.input_fields["input_dict_int"].annotation == dict[str, int]
    assert typed.output_fields["output_tup"].annotation == tuple[int, float]
    # DSPy's idiom for a copy: Signature(other.fields, instructions).
    again = Signature(typed.fields, "Same fields.")
    assert again.fields.keys() == typed.fields.keys() and again.instructions == "Same fields."


def test_equality() -> None:
    assert Signature("input1 -> output1").equals(Signature("input1 -> output1"))
    assert not Signature("input1 -> output1").equals(Signature("input2 -> output2"))
    assert not Signature("input1 -> output1").equals("input1 -> output1")
    assert Signature("input: str | None -> output: int | str").equals(
        Signature("input: Optional[str] -> output: Union[int, str]")
    )

    class Sig1(Signature):
        input: str | None = InputField()
        output: int | str = OutputField()

    class Sig2(Signature):
        input: Optional[str] = InputField()  # noqa: UP045 - the spelling DSPy users write
        output: Union[int, str] = OutputField()  # noqa: UP007

    assert Sig1.equals(Sig2)
    assert isinstance(Sig1.input_fields["input"].annotation, UnionType)


def test_insert_prepend_append_delete() -> None:
    class InitialSignature(Signature):
        input1: str = InputField()
        output1: int = OutputField()

    s1 = InitialSignature.prepend("new_input_start", InputField(), str)
    s2 = InitialSignature.append("new_input_end", InputField(), str)
    assert next(iter(s1.input_fields)) == "new_input_start"
    assert list(s2.input_fields)[-1] == "new_input_end"
    s3 = InitialSignature.prepend("new_output_start", OutputField())
    s4 = InitialSignature.append("new_output_end", OutputField())
    assert next(iter(s3.output_fields)) == "new_output_start"
    assert list(s4.output_fields)[-1] == "new_output_end"
    assert s4.output_fields["new_output_end"].annotation is str  # no type: str
    s5 = InitialSignature.insert(1, "middle", InputField(), float | int)
    assert list(s5.input_fields) == ["input1", "middle"]
    assert isinstance(s5.input_fields["middle"].annotation, UnionType)
    with pytest.raises(ValueError, match="Invalid index"):
        InitialSignature.insert(5, "far", InputField())
    assert list(s5.delete("middle").input_fields) == ["input1"]
    assert s5.delete("not_a_field").fields.keys() == s5.fields.keys()  # unchanged, as DSPy


def test_order_preserved_with_mixed_annotations() -> None:
    class ExampleSignature(Signature):
        text: str = InputField()
        output = OutputField()
        pass_evaluation: bool = OutputField()

    assert list(ExampleSignature.fields) == ["text", "output", "pass_evaluation"]


def test_a_subclass_without_docstring_keeps_its_parents_instructions() -> None:
    class Parent(Signature):
        """Answer well."""

        question: str = InputField()
        answer: str = OutputField()

    class Child(Parent):
        confidence: float = OutputField()

    assert Child.instructions == "Answer well."
    assert list(Child.output_fields) == ["answer", "confidence"]


def test_typed_string_signatures() -> None:
    sig = Signature("input1: int, input2: str -> output: float")
    assert sig.input_fields["input1"].annotation is int
    assert sig.output_fields["output"].annotation is float
    generics = Signature(
        "input_list: list[int], input_dict: dict[str, float] -> output_tuple: tuple[str, int]"
    )
    assert generics.input_fields["input_list"].annotation == list[int]
    assert generics.output_fields["output_tuple"].annotation == tuple[str, int]
    opt = Signature("a: Optional[str], b: Union[int, None], c: str | None -> d: Union[int, str]")
    for name in ("a", "b", "c"):
        assert type(None) in opt.input_fields[name].annotation.__args__
    assert Signature("a: Any -> b: Any").output_fields["b"].annotation is Any
    nested = Signature("a: list[Union[str, int]] -> b: Tuple[int, Optional[float], list[str]]")
    assert nested.output_fields["b"].annotation.__args__[0] is int
    assert set(
        Signature("a: str | (int | float) | None -> b").input_fields["a"].annotation.__args__
    ) == {
        str,
        int,
        float,
        type(None),
    }


def test_custom_types_in_string_signatures() -> None:
    class CustomType(pydantic.BaseModel):
        value: str

    sig = Signature("input: CustomType -> output: str", custom_types={"CustomType": CustomType})
    assert sig.input_fields["input"].annotation is CustomType
    union = Signature("input: CustomType | None -> output", custom_types={"CustomType": CustomType})
    assert union.input_fields["input"].annotation == Optional[CustomType]  # noqa: UP045
    lm = DummyLM([{"output": "processed"}])
    assert dspex.Predict(sig, lm=lm)(input=CustomType(value="test")).output == "processed"


def test_types_imported_by_the_caller_resolve_in_string_signatures() -> None:
    # Found where the signature is made, as DSPy finds them: no custom_types needed.
    sig = Signature(
        "input: Path, when: datetime.date, mood: Mood -> output: str, at: datetime.datetime"
    )
    assert sig.input_fields["input"].annotation is Path
    assert sig.input_fields["when"].annotation is datetime.date
    assert sig.input_fields["mood"].annotation is Mood
    assert sig.output_fields["at"].annotation is datetime.datetime
    lm = DummyLM([{"output": "/test/path", "at": "2024-01-02T03:04:05"}])
    pred = dspex.Predict(sig, lm=lm)(
        input=Path("/test/path"), when=datetime.date(2024, 1, 1), mood=Mood.HAPPY
    )
    assert pred.output == "/test/path"
    assert pred.at == datetime.datetime(2024, 1, 2, 3, 4, 5)


def test_dates_paths_enums_and_models_in_class_signatures() -> None:
    class Everything(Signature):
        when: datetime.date = InputField()
        where: Path = InputField()
        mood: Mood = InputField()
        address: Address = OutputField()
        at: datetime.datetime = OutputField()

    assert Everything.fields["when"].annotation is datetime.date
    lm = DummyLM([{"address": '{"street": "Main", "number": 5}', "at": "2024-01-02T00:00:00"}])
    pred = dspex.Predict(Everything, lm=lm)(
        when=datetime.date(2024, 1, 1), where=Path("/x"), mood=Mood.SAD
    )
    assert pred.address == Address(street="Main", number=5)
    assert pred.at == datetime.datetime(2024, 1, 2)


def test_input_field_defaults_and_optional_inputs_may_be_omitted() -> None:
    class QA(Signature):
        question: str = InputField()
        style: str = InputField(default="terse")
        context: Optional[str] = InputField()  # noqa: UP045
        answer: str = OutputField(default="unknown")

    assert QA.input_fields["style"].default == "terse"
    assert QA.output_fields["answer"].default == "unknown"
    lm = DummyLM([{"answer": "4"}])
    assert dspex.Predict(QA, lm=lm)(question="2+2?").answer == "4"
    prompt = str(lm.requests[0].messages[-1]["content"])
    assert "terse" in prompt


def test_a_missing_required_input_fails_before_the_lm_is_called() -> None:
    # Stricter than DSPy on purpose (DSPy logs a warning and calls the LM).
    lm = DummyLM([{"answer": "4"}])
    with pytest.raises(ValueError, match=r"missing input\(s\) \['question'\]"):
        dspex.Predict("question -> answer", lm=lm)()
    assert lm.requests == []


@pytest.mark.parametrize("name", ["items", "inputs", "keys", "values", "labels", "copy"])
def test_field_names_shared_with_example_methods_work(name: str) -> None:
    sig = Signature(f"question -> {name}")
    lm = DummyLM([{name: "v"}])
    pred = dspex.Predict(sig, lm=lm)(question="?")
    assert pred[name] == "v"


@pytest.mark.parametrize(
    "name", ["instructions", "fields", "signature", "input_fields", "output_fields"]
)
def test_a_field_named_like_a_signature_attribute_names_the_collision(name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name}.*reserved"):
        type(
            "ReservedSig",
            (Signature,),
            {
                "__annotations__": {"question": str, name: str},
                "question": InputField(),
                name: OutputField(),
            },
        )


@pytest.mark.parametrize("name", ["demos", "config", "lm"])
def test_an_input_named_like_a_call_keyword_names_the_collision(name: str) -> None:
    sig = Signature(f"{name} -> answer")
    with pytest.raises(ValueError, match=rf"{name}.*reserved"):
        dspex.Predict(sig)


def test_deprecated_field_arguments_warn_and_description_is_desc() -> None:
    with pytest.warns(DeprecationWarning):
        InputField(format=str)
    assert Signature({"q": InputField(description="the q"), "a": OutputField()}).fields[
        "q"
    ].desc == ("the q")


def test_with_updated_fields_sets_constraints() -> None:
    sig = Signature("q -> n: int").with_updated_fields("n", ge=0)
    assert sig.output_fields["n"].constraints == {"ge": 0}
    assert sig.with_updated_fields("n", constraints={"le": 9}).output_fields["n"].constraints == {
        "le": 9
    }
    with pytest.raises(ValueError, match="unknown argument"):
        sig.with_updated_fields("n", bogus=1)
