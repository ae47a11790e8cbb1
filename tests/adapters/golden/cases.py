"""The golden prompt cases, as plain data that DSPy and dspex can both rebuild.

``benchmarks/dspy_golden_prompts.py`` (run with DSPy installed) builds each case with DSPy,
formats it with ``dspy.ChatAdapter`` and ``dspy.JSONAdapter``, parses the completions in
``PARSE_CASES`` and writes the results next to this file. ``tests/adapters/test_golden_prompts.py``
builds the same cases with dspex and compares byte for byte. This module imports neither
framework: only the standard library and pydantic, so both sides load it by path.

A case's signature is either a string (``spec``) or a class (``fields`` + ``instructions``,
built with ``types.new_class`` so the docstring path runs); ``module="cot"`` takes the signature
of ``ChainOfThought(signature).predict``. Values are Python values; a ``HistoryValue`` stands for
``dspy.History``/``dspex.History``, an ``ImageValue`` for an ``Image`` and a ``CodeValue`` for a
``Code``, and each side converts them. A field type may be a name each side resolves:
``"History"``, ``"Image"``, ``"list[Image]"``, ``"Code"``, ``"Code[<language>]"``.

``PIXEL_PNG`` is the local image file an ``ImageValue(file=...)`` names: the script writes it
next to this module, and both sides read it with ``Image.from_path``; no URL is ever fetched.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pydantic

__all__ = [
    "CASES",
    "PARSE_CASES",
    "PIXEL_PNG",
    "Case",
    "CodeValue",
    "F",
    "HistoryValue",
    "ImageValue",
    "ParseCase",
    "canonical",
]

# A 1x1 PNG, written to ``golden/pixel.png`` by the script (and checked in).
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f00050001ff56c72f0d0000000049454e44ae426082"
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


class Shape(pydantic.BaseModel):
    """A named polygon."""

    name: str
    corners: list[Point]
    color: Color | None = None


@dataclass(frozen=True)
class F:
    """One field of a class-based signature."""

    name: str
    kind: Literal["input", "output"]
    type: Any = str
    desc: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryValue:
    """``dspy.History(messages=...)`` / ``dspex.History(messages=...)``."""

    messages: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ImageValue:
    """``Image(url)``, or ``Image.from_path(<golden dir>/file)`` when ``file`` is set."""

    url: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class CodeValue:
    """``Code(code=...)``, or ``Code[language](code=...)`` when ``language`` is set."""

    code: str
    language: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    inputs: dict[str, Any]
    spec: str | None = None
    fields: tuple[F, ...] = ()
    instructions: str | None = None
    module: Literal["predict", "cot"] = "predict"
    demos: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ParseCase:
    """A completion to parse against the signature of case ``case`` with ``adapter``."""

    case: str
    adapter: Literal["ChatAdapter", "JSONAdapter"]
    completion: str


def _i(name: str, type_: Any = str, desc: str | None = None, **constraints: Any) -> F:
    return F(name, "input", type_, desc, constraints)


def _o(name: str, type_: Any = str, desc: str | None = None, **constraints: Any) -> F:
    return F(name, "output", type_, desc, constraints)


_DATA_URI = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
_SHAPE = Shape(name="tri", corners=[Point(x=0), Point(x=1, y=2)], color=Color.BLUE)

CASES: tuple[Case, ...] = (
    Case("string_sig", spec="question -> answer", inputs={"question": "Capital of France?"}),
    Case(
        "string_sig_typed",
        spec="question, context: list[str] -> answer: int, confidence: float",
        instructions="Answer with a number.",
        demos=({"question": "1+1?", "context": ["math"], "answer": 2, "confidence": 0.9},),
        inputs={"question": "2+2?", "context": ["a", "b"]},
    ),
    Case(
        "all_output_types",
        fields=(
            _i("text", desc="The text to read."),
            _o("flag", bool, desc="Whether the text is relevant."),
            _o("count", int, ge=0, le=100),
            _o("ratio", float),
            _o("label", Literal["spam", "ham"]),
            _o("tags", list[str]),
            _o("scores", dict[str, float]),
            _o("point", Point),
            _o("maybe", Optional[int]),  # noqa: UP045 - typing.Optional, as DSPy code writes it
            _o("note", str | None),
            _o("color", Color),
            _o("shapes", list[Shape]),
            _o("extra", dict[str, Any]),
        ),
        instructions="Read the text.\n\n    Then fill in every field.\n  Be precise.",
        demos=(
            {
                "text": "A demo text.",
                "flag": True,
                "count": 3,
                "ratio": 0.25,
                "label": "ham",
                "tags": ["a", "b"],
                "scores": {"a": 1.5},
                "point": Point(x=1, y=2),
                "maybe": 7,
                "note": "a note",
                "color": Color.RED,
                "shapes": [_SHAPE],
                "extra": {"k": [1, "v", None]},
            },
            {
                "text": "Another, incomplete.",
                "flag": False,
                "count": 0,
                "ratio": 1.0,
                "label": "spam",
                "tags": [],
                "scores": {},
                "point": Point(x=0),
                "maybe": None,
                "note": None,
                "color": Color.BLUE,
                "shapes": [],
                "extra": {},
            },
        ),
        inputs={"text": "Buy now!"},
    ),
    Case(
        "all_input_types",
        fields=(
            _i("question", desc="The question."),
            _i("docs"),  # str-annotated, given a list: DSPy's numbered «» list
            _i("ids", list[int]),
            _i("meta", dict[str, Any]),
            _i("flag", bool),
            _i("ratio", float),
            _i("big", int),
            _i("point", Point),
            _i("color", Color),
            _i("level", Level),
            _i("when", Optional[str]),  # noqa: UP045 - typing.Optional, as DSPy code writes it
            _i("choice", Literal["a", "b"]),
            _i("raw_json"),
            _o("answer"),
        ),
        demos=(
            {
                "question": "demo q",
                "docs": ["one"],
                "ids": [1, 2],
                "meta": {"k": "v", "n": 1.5, "ok": True},
                "flag": False,
                "ratio": 2.5,
                "big": 10**12,
                "point": Point(x=3),
                "color": Color.BLUE,
                "level": Level.HIGH,
                "when": "today",
                "choice": "b",
                "raw_json": '{"a": 1}',
                "answer": "demo a",
            },
        ),
        inputs={
            "question": "What?",
            "docs": ["first doc", "second\nline", "has «quotes»"],
            "ids": [],
            "meta": {"nested": {"deep": [1, 2]}, "unicode": "héllo"},
            "flag": True,
            "ratio": 0.1,
            "big": -5,
            "point": Point(x=1, y=-1),
            "color": Color.RED,
            "level": Level.LOW,
            "when": None,
            "choice": "a",
            "raw_json": '{"a": 1}',
        },
    ),
    Case(
        "empty_and_single_lists",
        fields=(_i("none"), _i("one"), _i("many", list[str]), _o("answer")),
        inputs={"none": [], "one": ["only"], "many": ["x", "y"]},
    ),
    Case(
        "demos_mixed",
        spec="question, context -> answer, explanation",
        demos=(
            {"question": "q1", "context": "c1", "answer": "a1", "explanation": "e1"},
            {"question": "q2", "context": "c2", "answer": "a2"},  # an output missing
            {"question": "q3", "context": "c3"},  # inputs only: dropped
            {"answer": "a4", "explanation": "e4"},  # outputs only: dropped
            {"question": "q5", "answer": "a5", "explanation": "e5"},  # an input missing
            {"question": "q6", "context": None, "answer": "a6", "explanation": "e6"},  # a None
            {"question": "q7", "context": "c7", "answer": "a7", "explanation": "e7", "x": 1},
        ),
        inputs={"question": "q", "context": "c"},
    ),
    Case(
        "bool_demos",
        spec="claim -> verdict: bool, certainty: float",
        instructions="Judge the claim.",
        demos=(
            {"claim": "The sky is blue.", "verdict": True, "certainty": 0.9},
            {"claim": "Fire is cold.", "verdict": False, "certainty": 1.0},
        ),
        inputs={"claim": "Water is wet."},
    ),
    Case(
        "chain_of_thought",
        module="cot",
        fields=(
            _i("question", desc="A math word problem."),
            _o("answer", int, desc="The final number."),
        ),
        instructions="Solve the problem.",
        demos=(
            {"question": "2+2?", "reasoning": "Two and two make four.", "answer": 4},
            {"question": "3+3?", "answer": 6},  # no reasoning: an incomplete demo
        ),
        inputs={"question": "What is 6 times 7?"},
    ),
    Case(
        "chain_of_thought_string",
        module="cot",
        spec="question -> answer: Literal['yes', 'no']",
        inputs={"question": "Is 7 prime?"},
    ),
    Case(
        "history",
        fields=(
            _i("question"),
            _i("history", "History"),
            _o("answer"),
            _o("score", float),
        ),
        demos=({"question": "dq", "answer": "da", "score": 0.1},),
        inputs={
            "question": "And Germany?",
            "history": HistoryValue(
                (
                    {"question": "Capital of France?", "answer": "Paris", "score": 0.9},
                    {"question": "Capital of Spain?", "answer": "Madrid"},
                    {"answer": "An answer alone."},
                    {"question": "A question alone?"},
                )
            ),
        },
    ),
    Case(
        "history_empty",
        fields=(_i("question"), _i("history", "History"), _o("answer")),
        inputs={"question": "Hi?", "history": HistoryValue(())},
    ),
    Case(
        "images",
        fields=(
            _i("question"),
            _i("photo", "Image", desc="A photo to look at."),
            _i("gallery", "list[Image]"),
            _o("caption"),
            _o("count", int),
        ),
        instructions="Describe the photo, then count the gallery's images.",
        demos=(
            {"photo": ImageValue(url="https://example.com/demo-incomplete.png"), "caption": "?"},
            {
                "question": "What is it?",
                "photo": ImageValue(url="https://example.com/demo.jpg"),
                "gallery": [ImageValue(url=_DATA_URI)],
                "caption": "A cat.",
                "count": 1,
            },
        ),
        inputs={
            "question": "And this one?",
            "photo": ImageValue(file="pixel.png"),
            "gallery": [
                ImageValue(url="https://example.com/a.png"),
                ImageValue(url="gs://bucket/b.webp"),
            ],
        },
    ),
    Case(
        "image_only",
        fields=(_i("image", "Image"), _o("description")),
        inputs={"image": ImageValue(url=_DATA_URI)},
    ),
    Case(
        "code",
        fields=(
            _i("snippet", "Code", desc="The code to review."),
            _i("task"),
            _o("fixed", "Code[java]"),
            _o("explanation"),
        ),
        instructions="Port the snippet to Java.",
        demos=(
            {
                "snippet": CodeValue("def one():\n    return 1\n"),
                "task": "port",
                "fixed": CodeValue("int one() { return 1; }", language="java"),
                "explanation": "Same function.",
            },
        ),
        inputs={"snippet": CodeValue("def f(x):\n    return {'x': x}\n"), "task": "port it"},
    ),
    Case(
        "unicode_multiline",
        fields=(
            _i("passage", desc="Un passage — en français."),
            _o("summary", desc="Résumé, two lines at most."),
            _o("entities", list[str]),
        ),
        instructions="Résume le passage.\nGarde les accents: é, ü, 漢字.",
        demos=(
            {
                "passage": "Zürich liegt am See.\nEs ist schön.",
                "summary": "Zürich: am See.",
                "entities": ["Zürich", "東京"],
            },
        ),
        inputs={"passage": "  Leading and trailing spaces  \n\nTwo paragraphs.\n"},
    ),
    Case(
        "literals_and_unions",
        fields=(
            _i("text"),
            _o("quoted", Literal["it's", 'say "hi"', "plain"]),
            _o("number", Literal[1, 2, 3]),
            _o("either", Union[int, str]),  # noqa: UP007
            _o("entries", Optional[list[str]]),  # noqa: UP045 - typing.Optional, as DSPy code writes it
            _o("pep604", int | None),
            _o("where", Optional[Point]),  # noqa: UP045 - typing.Optional, as DSPy code writes it
            _o("level", Level),
        ),
        demos=(
            {
                "text": "t",
                "quoted": "it's",
                "number": 2,
                "either": "x",
                "entries": ["i"],
                "pep604": 5,
                "where": Point(x=9),
                "level": Level.LOW,
            },
        ),
        inputs={"text": "go"},
    ),
    Case(
        "descs_and_constraints",
        fields=(
            _i("topic", desc="What to write about."),
            _i("length", int, desc="Words, roughly.", gt=0),
            _o("title", desc="A short title.", min_length=3, max_length=80),
            _o("body", desc="The text."),
            _o("rating", float, desc="Self-rated quality.", ge=0.0, le=1.0),
        ),
        instructions="Write a short piece.",
        inputs={"topic": "tea", "length": 50},
    ),
)


_T = "string_sig"
_C = "code"
_TY = "all_output_types"
_LU = "literals_and_unions"

PARSE_CASES: tuple[ParseCase, ...] = (
    # -- ChatAdapter: layout ------------------------------------------------------------
    ParseCase(_T, "ChatAdapter", "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"),
    ParseCase(_T, "ChatAdapter", "[[ ## answer ## ]]\nParis"),
    ParseCase(_T, "ChatAdapter", "[[ ## answer ## ]] Paris, of course.\n\n[[ ## completed ## ]]"),
    ParseCase(_T, "ChatAdapter", "Sure!\n\n[[ ## answer ## ]]\nParis\nline two\n\n"),
    ParseCase(_T, "ChatAdapter", "   [[ ## answer ## ]]   \n  Paris  \n[[ ## completed ## ]]"),
    ParseCase(_T, "ChatAdapter", "[[ ## answer ## ]]\nfirst\n[[ ## answer ## ]]\nsecond"),
    ParseCase(_T, "ChatAdapter", "[[ ## other ## ]]\nx\n[[ ## answer ## ]]\ny"),
    ParseCase(_T, "ChatAdapter", "The answer is [[ ## answer ## ]] inline: Paris"),
    ParseCase(_T, "ChatAdapter", "[[ ## answer ## ]]\n"),
    ParseCase(_T, "ChatAdapter", "no markers at all"),
    ParseCase(_T, "ChatAdapter", ""),
    ParseCase(
        "chain_of_thought",
        "ChatAdapter",
        "[[ ## reasoning ## ]]\n6*7=42\n\n[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]",
    ),
    ParseCase("chain_of_thought", "ChatAdapter", "[[ ## answer ## ]]\n42"),
    ParseCase(
        "chain_of_thought", "ChatAdapter", "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n42."
    ),
    ParseCase(
        "chain_of_thought", "ChatAdapter", "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n 42 "
    ),
    ParseCase(
        "chain_of_thought", "ChatAdapter", "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n42.0"
    ),
    ParseCase(
        "chain_of_thought", "ChatAdapter", "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n'42'"
    ),
    ParseCase(
        "chain_of_thought", "ChatAdapter", '[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n"42"'
    ),
    ParseCase(
        "chain_of_thought", "ChatAdapter", "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\nforty"
    ),
    ParseCase(
        "chain_of_thought", "ChatAdapter", "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n42.5"
    ),
    ParseCase(
        "chain_of_thought_string",
        "ChatAdapter",
        "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\nyes",
    ),
    ParseCase(
        "chain_of_thought_string",
        "ChatAdapter",
        "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n'no'",
    ),
    ParseCase(
        "chain_of_thought_string",
        "ChatAdapter",
        "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\nLiteral['yes']",
    ),
    ParseCase(
        "chain_of_thought_string",
        "ChatAdapter",
        "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\nYes",
    ),
    # -- ChatAdapter: values -----------------------------------------------------------
    *(
        ParseCase(
            "bool_demos", "ChatAdapter", f"[[ ## verdict ## ]]\n{v}\n[[ ## certainty ## ]]\n{c}"
        )
        for v, c in (
            ("True", "0.5"),
            ("true", "1"),
            ("False", "1e-1"),
            ("false", ".5"),
            ("yes", "0.5"),
            ("no", "0.5"),
            ("1", "0.5"),
            ("0", "0.5"),
            ("'True'", "0.5"),
            ("`True`", "0.5"),
            ("maybe", "0.5"),
            ("True", "NaN"),
            ("True", "high"),
            ("True.", "0.5"),
        )
    ),
    ParseCase(
        _TY,
        "ChatAdapter",
        "[[ ## flag ## ]]\nTrue\n\n[[ ## count ## ]]\n3\n\n[[ ## ratio ## ]]\n0.5\n\n"
        '[[ ## label ## ]]\nspam\n\n[[ ## tags ## ]]\n["a", "b"]\n\n'
        '[[ ## scores ## ]]\n{"a": 1}\n\n[[ ## point ## ]]\n{"x": 1}\n\n'
        "[[ ## maybe ## ]]\nNone\n\n[[ ## note ## ]]\nNone\n\n[[ ## color ## ]]\nred\n\n"
        '[[ ## shapes ## ]]\n[{"name": "s", "corners": [{"x": 1, "y": 1}], "color": "blue"}]\n\n'
        '[[ ## extra ## ]]\n{"k": null}\n\n[[ ## completed ## ]]',
    ),
    ParseCase(
        _TY,
        "ChatAdapter",
        "[[ ## flag ## ]]\nfalse\n[[ ## count ## ]]\n0\n[[ ## ratio ## ]]\n1\n"
        "[[ ## label ## ]]\n\"ham\"\n[[ ## tags ## ]]\n['x', 'y',]\n"
        "[[ ## scores ## ]]\n```json\n{\"a\": 2.5}\n```\n[[ ## point ## ]]\n{'x': 2, 'y': 3}\n"
        "[[ ## maybe ## ]]\n4\n[[ ## note ## ]]\nsome note\n[[ ## color ## ]]\nBLUE\n"
        "[[ ## shapes ## ]]\n[]\n[[ ## extra ## ]]\n{'a': True, 'b': None}",
    ),
    ParseCase(
        _TY,
        "ChatAdapter",
        "[[ ## flag ## ]]\nTrue\n[[ ## count ## ]]\n3\n[[ ## ratio ## ]]\n0.5\n"
        "[[ ## label ## ]]\nspam\n[[ ## tags ## ]]\n[]\n[[ ## scores ## ]]\n{}\n"
        '[[ ## point ## ]]\n{"x": 1}\n[[ ## color ## ]]\nred\n[[ ## shapes ## ]]\n[]\n'
        "[[ ## extra ## ]]\n{}",  # maybe and note missing: Optional, so None
    ),
    ParseCase(
        _TY,
        "ChatAdapter",
        "[[ ## flag ## ]]\nTrue\n[[ ## count ## ]]\n3\n[[ ## ratio ## ]]\n0.5\n"
        "[[ ## label ## ]]\nspam\n[[ ## tags ## ]]\nnot a list\n[[ ## scores ## ]]\n{}\n"
        '[[ ## point ## ]]\n{"x": 1}\n[[ ## color ## ]]\nred\n[[ ## shapes ## ]]\n[]\n'
        "[[ ## extra ## ]]\n{}",
    ),
    ParseCase(
        _TY,
        "ChatAdapter",
        "[[ ## flag ## ]]\nTrue\n[[ ## count ## ]]\n3\n[[ ## ratio ## ]]\n0.5\n"
        "[[ ## label ## ]]\nspam\n[[ ## tags ## ]]\n[]\n[[ ## scores ## ]]\n{}\n"
        '[[ ## point ## ]]\n{"y": 1}\n[[ ## color ## ]]\nred\n[[ ## shapes ## ]]\n[]\n'
        "[[ ## extra ## ]]\n{}",  # point.x missing
    ),
    ParseCase(
        _TY,
        "ChatAdapter",
        "[[ ## flag ## ]]\nTrue\n[[ ## count ## ]]\n3\n[[ ## ratio ## ]]\n0.5\n"
        "[[ ## label ## ]]\nspam\n[[ ## tags ## ]]\n[]\n[[ ## scores ## ]]\n{}\n"
        '[[ ## point ## ]]\n{"x": 1}\n[[ ## color ## ]]\ngreen\n[[ ## shapes ## ]]\n[]\n'
        "[[ ## extra ## ]]\n{}",  # not a Color
    ),
    ParseCase(
        _LU,
        "ChatAdapter",
        "[[ ## quoted ## ]]\nit's\n[[ ## number ## ]]\n2\n[[ ## either ## ]]\n7\n"
        '[[ ## entries ## ]]\nNone\n[[ ## pep604 ## ]]\nnull\n[[ ## where ## ]]\n{"x": 1}\n'
        "[[ ## level ## ]]\n2",
    ),
    ParseCase(
        _LU,
        "ChatAdapter",
        "[[ ## quoted ## ]]\nsay \"hi\"\n[[ ## number ## ]]\n'3'\n[[ ## either ## ]]\nseven\n"
        '[[ ## entries ## ]]\n["a"]\n[[ ## pep604 ## ]]\n1\n[[ ## where ## ]]\nNone\n'
        "[[ ## level ## ]]\nLOW",
    ),
    ParseCase(
        _LU,
        "ChatAdapter",
        '[[ ## quoted ## ]]\n"plain"\n[[ ## number ## ]]\n4\n[[ ## either ## ]]\n1\n'
        "[[ ## entries ## ]]\n[]\n[[ ## pep604 ## ]]\n1\n[[ ## where ## ]]\nNone\n"
        "[[ ## level ## ]]\n1",  # 4 is not one of the Literal's numbers
    ),
    ParseCase(
        "history",
        "ChatAdapter",
        "[[ ## answer ## ]]\nBerlin\n\n[[ ## score ## ]]\n0.75\n\n[[ ## completed ## ]]",
    ),
    *(
        ParseCase(_C, "ChatAdapter", f"[[ ## fixed ## ]]\n{code}\n\n[[ ## explanation ## ]]\nok")
        for code in (
            "```java\nclass A {}\n```",
            "```\nint x = 1;\n```",
            "```int x = 1;```",
            "int x = 1;",
            "Here:\n```java\n[1, 2]\n```\nDone.",
            "class A {}",
            "",
        )
    ),
    # -- JSONAdapter -------------------------------------------------------------------
    *(
        ParseCase(_C, "JSONAdapter", text)
        for text in (
            '{"fixed": "```java\\nclass A {}\\n```", "explanation": "ok"}',
            '{"fixed": "int x = 1;", "explanation": "ok"}',
            '{"fixed": {"code": "```\\nclass B {}\\n```"}, "explanation": "ok"}',
            '{"fixed": {"source": "x"}, "explanation": "ok"}',
            '{"fixed": 42, "explanation": "ok"}',
        )
    ),
    ParseCase(_T, "JSONAdapter", '{"answer": "Paris"}'),
    ParseCase(_T, "JSONAdapter", '{\n  "answer": "Paris"\n}'),
    ParseCase(_T, "JSONAdapter", 'Here you go: {"answer": "Paris"} Hope it helps.'),
    ParseCase(_T, "JSONAdapter", '```json\n{"answer": "Paris"}\n```'),
    ParseCase(_T, "JSONAdapter", "{'answer': 'Paris'}"),
    ParseCase(_T, "JSONAdapter", '{"answer": "Paris", "extra": 1}'),
    ParseCase(_T, "JSONAdapter", '{"answer": 42}'),
    ParseCase(_T, "JSONAdapter", '{"answer": ["a", "b"]}'),
    ParseCase(_T, "JSONAdapter", '{"answer": null}'),
    ParseCase(_T, "JSONAdapter", '{"other": "x"}'),
    ParseCase(_T, "JSONAdapter", '["Paris"]'),
    ParseCase(_T, "JSONAdapter", "Paris"),
    ParseCase(_T, "JSONAdapter", '{"answer": "Paris",}'),
    ParseCase(_T, "JSONAdapter", '{"answer": "a {b} c"}'),
    *(
        ParseCase("bool_demos", "JSONAdapter", text)
        for text in (
            '{"verdict": true, "certainty": 0.5}',
            '{"verdict": "True", "certainty": "0.5"}',
            '{"verdict": "true", "certainty": 1}',
            '{"verdict": "yes", "certainty": 0}',
            '{"verdict": 1, "certainty": 0.5}',
            "{'verdict': True, 'certainty': 0.5}",
            '{"verdict": "maybe", "certainty": 0.5}',
            '{"verdict": true}',
        )
    ),
    ParseCase(
        _TY,
        "JSONAdapter",
        '{"flag": true, "count": "3", "ratio": 1, "label": "ham", "tags": ["a"], '
        '"scores": {"a": 1}, "point": {"x": 1}, "maybe": null, "note": null, "color": "blue", '
        '"shapes": [{"name": "s", "corners": []}], "extra": {"z": [1]}}',
    ),
    ParseCase(
        _TY,
        "JSONAdapter",
        '{"flag": "False", "count": 3.0, "ratio": "0.5", "label": "\'spam\'", "tags": "[\\"a\\"]", '
        '"scores": "{\\"a\\": 1}", "point": "{\\"x\\": 2}", "color": "RED", "shapes": [], '
        '"extra": {}}',
    ),
    ParseCase(
        _TY,
        "JSONAdapter",
        '{"flag": true, "count": -1, "ratio": 1, "label": "ham", "tags": [], "scores": {}, '
        '"point": {"x": 1}, "color": "red", "shapes": [], "extra": {}}',  # count < 0
    ),
    ParseCase(
        _LU,
        "JSONAdapter",
        '{"quoted": "say \\"hi\\"", "number": 3, "either": 5, "entries": null, "pep604": null, '
        '"where": {"x": 1, "y": 2}, "level": 1}',
    ),
    ParseCase(
        _LU,
        "JSONAdapter",
        '{"quoted": "Literal[\'plain\']", "number": "1", "either": "5", "entries": ["a"], '
        '"pep604": "7", "where": null, "level": "HIGH"}',
    ),
    ParseCase(
        "chain_of_thought",
        "JSONAdapter",
        '{"reasoning": "6*7", "answer": 42}',
    ),
    ParseCase("chain_of_thought", "JSONAdapter", '{"reasoning": "6*7", "answer": "42"}'),
    ParseCase("chain_of_thought", "JSONAdapter", '{"reasoning": "6*7", "answer": 42.0}'),
    ParseCase("chain_of_thought", "JSONAdapter", '{"reasoning": "6*7", "answer": 42.5}'),
)


def canonical(value: Any) -> Any:
    """A JSON value that keeps what a comparison must see: types of models, enums and numbers."""
    if isinstance(value, pydantic.BaseModel):
        return {"$model": type(value).__name__, "data": canonical(dict(value))}
    if isinstance(value, enum.Enum):
        return {"$enum": type(value).__name__, "value": value.value}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return {"$int": value}
    if isinstance(value, float):
        return {"$float": "nan" if math.isnan(value) else repr(value)}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return {"$other": type(value).__name__, "repr": repr(value)}
