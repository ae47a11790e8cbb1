"""dspex's adapters write DSPy 3.4's messages byte for byte, and read what DSPy reads.

The golden files are DSPy's own output for the cases in ``golden/cases.py``, written by
``benchmarks/dspy_golden_prompts.py`` (run with DSPy installed; this test never imports it).
"""

from __future__ import annotations

import json
import types
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.errors import AdapterParseError

from .golden import cases as golden_cases
from .golden.cases import (
    CASES,
    PARSE_CASES,
    Case,
    CodeValue,
    HistoryValue,
    ImageValue,
    canonical,
)

GOLDEN = Path(__file__).parent / "golden"
ADAPTERS = ("ChatAdapter", "JSONAdapter")

# Where dspex reads a completion differently from DSPy on purpose (docs/migrating-from-dspy.md).
DELIBERATE = {
    # DSPy cuts the text after a header at the header's offset in the *stripped* line, so an
    # indented header keeps "]]" in the value; dspex reads the value after the header.
    ("string_sig", "   [[ ## answer ## ]]   \n  Paris  \n[[ ## completed ## ]]"): {
        "answer": "Paris"
    },
    # DSPy finds an enum member by value or name, so an int-valued member written as text
    # (``1``, as DSPy's own demos write it) does not parse; dspex reads it.
    (
        "literals_and_unions",
        "[[ ## quoted ## ]]\nit's\n[[ ## number ## ]]\n2\n[[ ## either ## ]]\n7\n"
        '[[ ## entries ## ]]\nNone\n[[ ## pep604 ## ]]\nnull\n[[ ## where ## ]]\n{"x": 1}\n'
        "[[ ## level ## ]]\n2",
    ): {
        "quoted": "it's",
        "number": {"$int": 2},
        "either": {"$int": 7},
        "entries": None,
        "pep604": None,
        "where": {"$model": "Point", "data": {"x": {"$int": 1}, "y": {"$int": 0}}},
        "level": {"$enum": "Level", "value": 2},
    },
}
# DSPy shows constraints (``ge=0``) in the prompt but does not check them; dspex does.
CONSTRAINED = {("all_output_types", "JSONAdapter", '"count": -1')}


def _value(value: Any) -> Any:
    if isinstance(value, HistoryValue):
        return dspex.History(messages=[dict(m) for m in value.messages])
    if isinstance(value, ImageValue):
        if value.file is not None:
            return dspex.Image.from_path(GOLDEN / value.file)
        return dspex.Image(value.url)
    if isinstance(value, CodeValue):
        code = dspex.Code if value.language is None else dspex.Code[value.language]
        return code(code=value.code)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def _type(name: Any) -> Any:
    """A field type the case table names (``"Image"``, ``"Code[java]"``...) as dspex's."""
    if not isinstance(name, str):
        return name
    if name.startswith("Code[") and name.endswith("]"):
        return dspex.Code[name[5:-1]]
    named = {"History": dspex.History, "Image": dspex.Image, "Code": dspex.Code}
    return list[dspex.Image] if name == "list[Image]" else named[name]


def build_signature(case: Case) -> type[dspex.Signature]:
    return _signature(case.name)


@cache
def _signature(name: str) -> type[dspex.Signature]:
    case = next(c for c in CASES if c.name == name)
    if case.spec is not None:
        sig = dspex.Signature(case.spec, case.instructions)
    else:
        annotations: dict[str, Any] = {}
        body: dict[str, Any] = {"__annotations__": annotations}
        if case.instructions is not None:
            body["__doc__"] = case.instructions
        for f in case.fields:
            annotations[f.name] = _type(f.type)
            make = dspex.InputField if f.kind == "input" else dspex.OutputField
            body[f.name] = make(desc=f.desc, **f.constraints)
        sig = types.new_class(
            "".join(p.title() for p in case.name.split("_")),
            (dspex.Signature,),
            {},
            lambda ns: ns.update(body),
        )
    if case.module == "cot":
        sig = dspex.ChainOfThought(sig).predict.signature
    return sig


def _golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_messages_are_dspys_byte_for_byte(case: Case, adapter: str) -> None:
    sig = build_signature(case)
    demos = [dspex.Example({k: _value(v) for k, v in d.items()}) for d in case.demos]
    inputs = {k: _value(v) for k, v in case.inputs.items()}
    messages = getattr(dspex, adapter)().format(sig, demos, inputs)
    expected = _golden(case.name)[adapter]
    assert [m["role"] for m in messages] == [m["role"] for m in expected]
    for got, want in zip(messages, expected, strict=True):
        assert got["content"] == want["content"], got["role"]


def test_every_case_has_a_golden_file_made_by_dspy_3_4_1() -> None:
    names = {p.stem for p in GOLDEN.glob("*.json")} - {"parse"}
    assert names == {c.name for c in CASES}
    assert (GOLDEN / "pixel.png").read_bytes() == golden_cases.PIXEL_PNG
    assert {_golden(n)["dspy"] for n in names} == {"3.4.1"}
    assert len(_golden("parse")) == len(PARSE_CASES)


def _parse_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _golden("parse")
    return rows


@pytest.mark.parametrize(
    "row", _parse_rows(), ids=lambda r: f"{r['adapter']}-{r['case']}-{r['completion'][:30]!r}"
)
def test_parses_what_dspy_parses(row: dict[str, Any]) -> None:
    case = next(c for c in CASES if c.name == row["case"])
    sig = build_signature(case)
    adapter = getattr(dspex, row["adapter"])()
    completion = row["completion"]
    deliberate = DELIBERATE.get((row["case"], completion))
    if deliberate is not None:
        assert canonical(adapter.parse(sig, completion)) == deliberate
    elif any(
        c == row["case"] and a == row["adapter"] and s in completion for c, a, s in CONSTRAINED
    ):
        with pytest.raises(AdapterParseError, match="greater than or equal"):
            adapter.parse(sig, completion)
    elif "result" in row:
        assert canonical(adapter.parse(sig, completion)) == row["result"]
    else:
        with pytest.raises(AdapterParseError):
            adapter.parse(sig, completion)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_dspy_formatted_demo_answers_parse_back(case: Case, adapter: str) -> None:
    """Each complete demo's assistant message, as DSPy wrote it, parses to the demo's values."""
    sig = build_signature(case)
    complete = [d for d in case.demos if all(d.get(k) is not None for k in sig.fields)]
    incomplete = [
        d
        for d in case.demos
        if d not in complete
        and any(k in d for k in sig.input_fields)
        and any(k in d for k in sig.output_fields)
    ]
    answers = [m["content"] for m in _golden(case.name)[adapter] if m["role"] == "assistant"]
    answers = answers[len(incomplete) : len(incomplete) + len(complete)]
    for demo, answer in zip(complete, answers, strict=True):
        want = {k: _value(demo[k]) for k in sig.output_fields}
        assert canonical(getattr(dspex, adapter)().parse(sig, answer)) == canonical(want)


def test_the_case_table_is_framework_free() -> None:
    source = Path(golden_cases.__file__).read_text()
    assert "import dspy" not in source and "import dspex" not in source
