"""Signatures: class and string forms, the supported types, and the error table."""

import enum
from typing import Any, Literal, Optional

import pydantic
import pytest

import dspex
from dspex import InputField, OutputField, Signature, SignatureError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    number: int


class Everything(Signature):
    """Use every supported type."""

    text: str = InputField(desc="some text")
    count: int = InputField(ge=0)
    ratio: float = InputField()
    flag: bool = InputField()
    tags: list[str] = InputField()
    scores: dict[str, float] = InputField()
    maybe: Optional[int] = InputField()  # noqa: UP045 - testing the spelling users write
    either: int | None = InputField()
    color: Color = OutputField()
    mood: Literal["happy", "sad"] = OutputField()
    address: Address = OutputField()
    nested: list[Address] = OutputField()
    anything: Any = OutputField()


def test_class_form_collects_fields_in_order_and_docstring() -> None:
    assert list(Everything.input_fields) == [
        "text",
        "count",
        "ratio",
        "flag",
        "tags",
        "scores",
        "maybe",
        "either",
    ]
    assert list(Everything.output_fields) == ["color", "mood", "address", "nested", "anything"]
    assert Everything.instructions == "Use every supported type."
    assert Everything.fields["text"].desc == "some text"
    assert Everything.fields["count"].constraints == {"ge": 0}


def test_default_instructions_name_the_fields() -> None:
    class NoDoc(Signature):
        question: str = InputField()
        answer: str = OutputField()

    assert NoDoc.instructions == "Given the fields `question`, produce the fields `answer`."


def test_string_form_with_types() -> None:
    sig = dspex.Signature(
        "question, context: list[str] -> answer: str, confidence: float", "Be brief."
    )
    assert sig.signature == "question, context -> answer, confidence"
    assert sig.instructions == "Be brief."
    assert sig.fields["context"].annotation == list[str]
    assert sig.fields["confidence"].annotation is float
    lit = dspex.make_signature("q -> label: Literal['a', 'b, c'], d: dict[str, list[int]]")
    assert lit.fields["label"].type_name == "Literal['a', 'b, c']"
    custom = dspex.make_signature("q -> addr: Address", custom_types={"Address": Address})
    assert custom.fields["addr"].annotation is Address


def test_output_model_validates_constraints_and_nested_types() -> None:
    class Q(Signature):
        q: str = InputField()
        n: int = OutputField(ge=0, le=10)
        addr: Address = OutputField()

    model = Q.output_model()
    ok = model.model_validate({"n": "3", "addr": {"street": "Main", "number": "5"}})
    assert ok.n == 3 and ok.addr.number == 5
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"n": 11, "addr": {"street": "Main", "number": 5}})


def test_derived_signatures_are_new_classes() -> None:
    base = dspex.Signature("question -> answer")
    assert base.with_instructions("New.").instructions == "New."
    assert base.instructions != "New."
    cot = base.prepend("reasoning", OutputField(desc="think"))
    assert cot.signature == "question -> reasoning, answer"
    assert base.signature == "question -> answer"
    more = base.append("context", InputField(), list[str])
    assert more.signature == "question, context -> answer"
    assert more.delete("context").signature == "question -> answer"
    assert base.with_updated_fields("answer", desc="short").fields["answer"].desc == "short"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: dspex.Signature("question ->"), "no output fields"),
        (lambda: dspex.Signature("question answer"), "inputs -> outputs"),
        (lambda: dspex.Signature("a -> b -> c"), "inputs -> outputs"),
        (lambda: dspex.Signature("q, q -> a"), "twice"),
        (lambda: dspex.Signature("q -> a, q"), "twice"),
        (lambda: dspex.Signature("my question -> a"), "not a valid Python identifier"),
        (lambda: dspex.Signature("class -> a"), "not a valid Python identifier"),
        (lambda: dspex.Signature("_q -> a"), "must not start with '_'"),
        (lambda: dspex.Signature("q -> instructions"), "reserved Signature attribute"),
        (lambda: dspex.Signature("q -> a: Frobnicator"), "Unknown type 'Frobnicator'"),
        (lambda: dspex.Signature("q -> a: dict[int, str]"), "dict keys must be str"),
        (lambda: dspex.Signature("q -> a: __import__('os')"), "Cannot read type"),
        (lambda: dspex.Signature("q -> a").append("q", InputField()), "already has a field"),
        (lambda: dspex.Signature("q -> a").with_updated_fields("zzz", desc="x"), "has no field"),
        (lambda: dspex.Signature("q -> a").delete("a"), "no output fields"),
        (lambda: InputField(alias="x"), "unknown argument"),
    ],
)
def test_signature_error_table(make, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SignatureError, match=message):
        make()


def test_class_form_errors_at_definition_time() -> None:
    with pytest.raises(SignatureError, match="no output fields"):

        class OnlyInputs(Signature):
            q: str = InputField()

    with pytest.raises(SignatureError, match="must be declared as"):

        class Bare(Signature):
            q: str
            a: str = OutputField()

    class Opaque:
        pass

    with pytest.raises(SignatureError, match="not supported"):

        class Weird(Signature):
            q: str = InputField()
            a: Opaque = OutputField()

    with pytest.raises(SignatureError, match="not instantiated"):
        Everything()


def test_state_round_trip_keeps_instructions_and_descs() -> None:
    sig = dspex.Signature("question -> answer: int", "Original.")
    changed = sig.with_instructions("Tuned.").with_updated_fields("answer", desc="a number")
    restored = sig.load_state(changed.dump_state())
    assert restored.instructions == "Tuned."
    assert restored.fields["answer"].desc == "a number"
    assert restored.fields["answer"].annotation is int
    assert restored.equals(changed)
