"""How values and types are written into prompts, exactly as DSPy 3.4's adapters write them.

Each function mirrors one in ``dspy/adapters/utils.py`` (named in its docstring); the golden
tests in ``tests/adapters/test_golden_prompts.py`` hold them to DSPy's bytes.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Union

import pydantic

from dspex.adapters._code import Code
from dspex.adapters._types import custom_types

if TYPE_CHECKING:
    from dspex.signatures import Field

__all__ = [
    "annotation_name",
    "field_descriptions",
    "format_field_value",
    "json_schema_text",
    "serialize_for_json",
    "translate_field_type",
]

# What DSPy writes for a pydantic constraint (``dspy/signatures/field.py``), in its order.
_CONSTRAINT_TEXT = {
    "gt": "greater than: ",
    "ge": "greater than or equal to: ",
    "lt": "less than: ",
    "le": "less than or equal to: ",
    "min_length": "minimum length: ",
    "max_length": "maximum length: ",
    "multiple_of": "a multiple of the given number: ",
    "allow_inf_nan": "allow 'inf', '-inf', 'nan' values: ",
}

_NOTE_INDENT = " " * 8


@lru_cache(maxsize=512)
def _type_adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(tp)


def serialize_for_json(value: Any) -> Any:
    """``serialize_for_json``: a JSON-compatible form of ``value`` (models, enums, dates...).

    A nested value pydantic cannot serialize becomes its ``str``; a value it cannot handle at
    all becomes ``str(value)``.
    """
    if value is None or type(value) in (str, int, bool):
        return value  # the common case, without a TypeAdapter
    try:
        tp: Any = type(value)
        return _type_adapter(tp).dump_python(value, mode="json", fallback=str)
    except Exception:
        return str(value)


def format_field_value(field: Field, value: Any) -> str:
    """``format_field_value``: a field's value as prompt text.

    A list given to a ``str`` field becomes a numbered list of «quoted» blobs; a dict or list
    becomes JSON; anything else its string form (so ``True``, not ``true``).
    """
    if type(value) is str:
        return value  # what the steps below make of a str, without them
    if isinstance(value, list) and field.annotation is str:
        return _format_list(value)
    jsonable = serialize_for_json(value)
    if isinstance(jsonable, dict | list):
        return json.dumps(jsonable, ensure_ascii=False)
    return str(jsonable)


def _format_list(value: Sequence[Any]) -> str:
    if len(value) == 0:
        return "N/A"
    if len(value) == 1:
        return _format_blob(value[0])
    return "\n".join(f"[{i + 1}] {_format_blob(item)}" for i, item in enumerate(value))


def _format_blob(blob: Any) -> str:
    text = str(blob)
    if "\n" not in text and "«" not in text and "»" not in text:
        return f"«{text}»"
    indented = text.replace("\n", "\n    ")
    return f"«««\n    {indented}\n»»»"


def annotation_name(annotation: Any) -> str:
    """``get_annotation_name``: ``int``, ``list[str]``, ``Union[int, NoneType]``,
    ``Literal['a', 'b']`` — DSPy's spelling of a type in prompts."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is types.UnionType:
        origin = Union
    if origin is None:
        name = getattr(annotation, "__name__", None)
        return name if isinstance(name, str) else str(annotation)
    if origin is Literal:
        inner = ", ".join(
            _quoted_literal(a) if isinstance(a, str) else annotation_name(a) for a in args
        )
    else:
        inner = ", ".join(annotation_name(a) for a in args)
    return f"{annotation_name(origin)}[{inner}]"


def _quoted_literal(s: str) -> str:
    has_single, has_double = "'" in s, '"' in s
    if has_single and not has_double:
        return f'"{s}"'
    if has_single and has_double:
        escaped = s.replace("'", "\\'")
        return f"'{escaped}'"
    return f"'{s}'"


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _move_type_to_front(d: Any) -> Any:
    if isinstance(d, Mapping):
        items = sorted(d.items(), key=lambda kv: (kv[0] != "type", kv[0]))
        return {k: _move_type_to_front(v) for k, v in items}
    if isinstance(d, list):
        return [_move_type_to_front(v) for v in d]
    return d


def json_schema_text(annotation: Any) -> str:
    """The JSON schema DSPy shows for a type: ``type`` first, other keys sorted."""
    try:
        return _json_schema_text(annotation)
    except TypeError:  # an unhashable annotation: not cached
        return _render_schema(annotation)


@lru_cache(maxsize=512)
def _json_schema_text(annotation: Any) -> str:
    return _render_schema(annotation)


def _render_schema(annotation: Any) -> str:
    schema = pydantic.TypeAdapter(annotation).json_schema()
    return json.dumps(_move_type_to_front(schema), ensure_ascii=False)


def translate_field_type(field: Field) -> str:
    """``translate_field_type``: ``{name}`` plus, for a typed output, a note on its format."""
    tp = field.annotation
    if field.kind == "input" or tp is str:
        desc = ""
    elif tp is bool:
        desc = "must be True or False"
    elif tp in (int, float):
        desc = f"must be a single {tp.__name__} value"
    elif _is_enum(tp):
        desc = "must be one of: " + "; ".join(str(m.value) for m in tp)
    elif typing.get_origin(tp) is Literal:
        options = "; ".join(str(x) for x in typing.get_args(tp))
        desc = f"must exactly match (no extra characters) one of: {options}"
    elif isinstance(tp, type) and issubclass(tp, Code):
        desc = ""  # its type description says how to write it
    else:
        desc = f"must adhere to the JSON schema: {json_schema_text(tp)}"
    note = f"{_NOTE_INDENT}# note: the value you produce {desc}" if desc else ""
    return f"{{{field.name}}}{note}"


def _constraints(field: Field) -> str:
    return ", ".join(
        f"{_CONSTRAINT_TEXT[k]}{v}" for k, v in field.constraints.items() if k in _CONSTRAINT_TEXT
    )


def field_descriptions(fields: Mapping[str, Field]) -> str:
    """``get_field_description_string``: ``1. `question` (str): its desc`` lines.

    A field without a description keeps DSPy's ``": "`` (trailing space included), and
    constraints follow on a ``Constraints:`` line.
    """
    lines = []
    for i, (name, f) in enumerate(fields.items(), 1):
        desc = f.desc if f.desc and f.desc != f"${{{name}}}" else ""
        for custom in custom_types(f.annotation):  # e.g. ToolCalls: how to write one
            if custom.description():
                desc += (
                    f"\n    Type description of {annotation_name(custom)}: {custom.description()}"
                )
        line = f"{i}. `{name}` ({annotation_name(f.annotation)}): {desc}"
        constraints = _constraints(f)
        if constraints:
            line += f"\nConstraints: {constraints}"
        lines.append(line)
    return "\n".join(lines).strip()
