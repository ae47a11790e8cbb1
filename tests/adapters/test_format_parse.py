"""ChatAdapter and JSONAdapter render DSPy's format and parse typed outputs."""

import enum
from typing import Literal

import pydantic
import pytest

import dspex
from dspex.adapters._base import FieldParseFailure


class Point(pydantic.BaseModel):
    x: int
    y: int


class Shape(pydantic.BaseModel):
    name: str
    corners: list[Point]


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


class Describe(dspex.Signature):
    """Describe the shape."""

    text: str = dspex.InputField(desc="a description")
    kind: Literal["polygon", "curve"] = dspex.OutputField()
    tags: list[str] = dspex.OutputField()
    shape: Shape = dspex.OutputField()
    size: Size = dspex.OutputField()
    sides: int = dspex.OutputField(ge=0)


def test_chat_format_matches_dspy_layout() -> None:
    demo = dspex.Example(question="1+1?", answer="2")
    msgs = dspex.ChatAdapter().format(
        dspex.Signature("question -> answer: int", "Add."), [demo], {"question": "2+2?"}
    )
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    system = msgs[0]["content"]
    assert system.startswith("Your input fields are:\n1. `question` (str):\n")
    assert "Your output fields are:\n1. `answer` (int):\n" in system
    assert "[[ ## answer ## ]]\n{answer}        # note: the value you produce must be" in system
    assert system.endswith("your objective is: \n        Add.")
    assert msgs[1]["content"] == "[[ ## question ## ]]\n1+1?"
    assert msgs[2]["content"] == "[[ ## answer ## ]]\n2\n\n[[ ## completed ## ]]\n"
    assert msgs[3]["content"].startswith("[[ ## question ## ]]\n2+2?\n\nRespond with")
    assert "ending with the marker for `[[ ## completed ## ]]`" in msgs[3]["content"]


def test_bool_demo_values_are_written_as_python_writes_them() -> None:
    sig = dspex.Signature("claim -> verdict: bool")
    demo = dspex.Example(claim="c", verdict=True)
    chat = dspex.ChatAdapter().format(sig, [demo], {"claim": "d"})
    assert chat[2]["content"] == "[[ ## verdict ## ]]\nTrue\n\n[[ ## completed ## ]]\n"
    json_msgs = dspex.JSONAdapter().format(sig, [demo], {"claim": "d"})
    assert json_msgs[2]["content"] == '{\n  "verdict": true\n}'


def test_demos_missing_a_field_come_first_and_say_so() -> None:
    msgs = dspex.ChatAdapter().format(
        dspex.Signature("question, context -> answer"),
        [
            dspex.Example(question="full", context="c", answer="a"),
            dspex.Example(question="q only", answer="a"),
            dspex.Example(question="no output"),
        ],
        {"question": "q", "context": "c"},
    )
    assert len(msgs) == 6  # the demo without an output is dropped
    assert msgs[1]["content"].startswith("This is an example of the task, though some input")
    assert msgs[1]["content"].endswith("[[ ## question ## ]]\nq only")
    assert msgs[3]["content"] == "[[ ## question ## ]]\nfull\n\n[[ ## context ## ]]\nc"


def test_chat_parse_typed_outputs() -> None:
    text = (
        '[[ ## kind ## ]]\npolygon\n\n[[ ## tags ## ]]\n["a", "b"]\n\n'
        '[[ ## shape ## ]]\n```json\n{"name": "tri", "corners": [{"x": 0, "y": 0}]}\n```\n\n'
        "[[ ## size ## ]]\nlarge\n\n[[ ## sides ## ]]\n3\n\n[[ ## completed ## ]]"
    )
    out = dspex.ChatAdapter().parse(Describe, text)
    assert out["kind"] == "polygon"
    assert out["tags"] == ["a", "b"]
    assert out["shape"] == Shape(name="tri", corners=[Point(x=0, y=0)])
    assert out["size"] is Size.LARGE
    assert out["sides"] == 3


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("no markers at all", None),
        ("[[ ## kind ## ]]\ntriangle", "kind"),  # not one of the Literal options
        ("[[ ## kind ## ]]\npolygon\n[[ ## tags ## ]]\nnot a list", "tags"),
    ],
)
def test_chat_parse_failures_name_the_field(text: str, field: str | None) -> None:
    with pytest.raises(FieldParseFailure) as info:
        dspex.ChatAdapter().parse(Describe, text)
    assert info.value.field == field


def test_constraint_violation_is_a_parse_failure() -> None:
    sig = dspex.make_signature(
        {"q": (str, dspex.InputField()), "n": (int, dspex.OutputField(ge=0))}
    )
    with pytest.raises(FieldParseFailure, match="greater than or equal"):
        dspex.ChatAdapter().parse(sig, "[[ ## n ## ]]\n-3")


def test_json_adapter_requests_json_mode_and_parses() -> None:
    adapter = dspex.JSONAdapter()
    sig = dspex.Signature("q -> a: int, tags: list[str]")
    assert adapter.lm_kwargs(sig) == {"response_format": {"type": "json_object"}}
    assert adapter.parse(sig, 'Sure: {"a": "7", "tags": ["x"]} done') == {"a": 7, "tags": ["x"]}
    with pytest.raises(FieldParseFailure, match="no value for field 'tags'"):
        adapter.parse(sig, '{"a": 7}')
    with pytest.raises(FieldParseFailure, match="cannot be serialized to a JSON object"):
        adapter.parse(sig, '{"a": 7,')
    msgs = adapter.format(sig, [dspex.Example(q="x", a=1, tags=["t"])], {"q": "y"})
    assert msgs[2]["content"] == '{\n  "a": 1,\n  "tags": [\n    "t"\n  ]\n}'


def test_what_is_worked_out_once_per_signature_follows_each_signature() -> None:
    # Adapters keep per-signature text (output reminder, constraints, fields by kind) on the
    # signature class: a subclass or a derived signature must never read its parent's.
    class Base(dspex.Signature):
        """Answer."""

        question: str = dspex.InputField()
        answer: int = dspex.OutputField()

    class More(Base):
        note: str = dspex.OutputField()

    chat = dspex.ChatAdapter()
    base_reminder = chat.format(Base, [], {"question": "q"})[-1]["content"]
    assert "`[[ ## note ## ]]`" not in base_reminder
    more_reminder = chat.format(More, [], {"question": "q"})[-1]["content"]
    assert "`[[ ## answer ## ]]` (must be formatted as a valid Python int), then `[[ ## note" in (
        more_reminder
    )
    assert list(More.output_fields) == ["answer", "note"]
    assert list(Base.output_fields) == ["answer"]
    bounded = Base.with_updated_fields("answer", ge=0)
    assert chat.parse(Base, "[[ ## answer ## ]]\n-1") == {"answer": -1}
    with pytest.raises(FieldParseFailure):
        chat.parse(bounded, "[[ ## answer ## ]]\n-1")
    renamed = Base.with_updated_fields("answer", type_=str)
    assert "(must be formatted" not in chat.format(renamed, [], {"question": "q"})[-1]["content"]
