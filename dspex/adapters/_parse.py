"""Turning an LM's text for one field into a typed value, as DSPy 3.4's ``parse_value`` does.

DSPy leans on ``json_repair`` for lenient JSON; dspex reads the same lenient forms itself
(see :func:`loads_lenient`): plain JSON, Python literals (``True``, ``'single quotes'``, a
trailing comma), JSON in a Markdown code fence, and a JSON object or array with text around
it. It does not re-close truncated JSON: a cut-off answer is not an answer.
"""

from __future__ import annotations

import ast
import copy
import enum
import itertools
import json
import re
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Union

import pydantic
from pydantic_core import PydanticUndefined

if TYPE_CHECKING:
    from dspex.signatures import Field

__all__ = [
    "NOT_PARSED",
    "allows_none",
    "find_enum_member",
    "loads_lenient",
    "parse_value",
    "type_adapter",
]

NOT_PARSED = ""  # what json_repair returns for text it cannot read; kept for the same checks

_FENCE = re.compile(r"^\s*```[\w-]*[ \t]*\n?(.*?)\n?[ \t]*```\s*$", re.DOTALL)
_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}
_OPENING = re.compile(r"[{\[]")
_MAX_SPANS = 16  # bracketed spans tried before giving up (each costs a scan)
_WORD = re.compile(r"\b(true|false|null)\b")


@lru_cache(maxsize=1024)
def type_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    """A cached ``TypeAdapter``: building one is the slow part of validating a value."""
    return pydantic.TypeAdapter(annotation)


def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return type_adapter(annotation)
    except TypeError:  # unhashable annotation
        return pydantic.TypeAdapter(annotation)


def allows_none(annotation: Any) -> bool:
    """Whether ``annotation`` admits ``None`` (``Optional[int]``, ``str | None``, ``None``)."""
    if annotation is None or annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return bool(args) and allows_none(args[0])
    if origin in (Union, types.UnionType):
        return any(allows_none(a) for a in args)
    return False


def find_enum_member(cls: type[enum.Enum], identifier: Any) -> enum.Enum:
    """The member whose value is ``identifier``, else whose name is; ``ValueError`` if none."""
    for member in cls:
        if member.value == identifier:
            return member
    if isinstance(identifier, str) and identifier in cls.__members__:
        return cls[identifier]
    if isinstance(identifier, str) and identifier.strip():
        # A non-string value written as text, as the ChatAdapter writes it (``1`` for an
        # int-valued member). DSPy refuses this, so its own demos of such enums do not parse.
        try:
            value = json.loads(identifier)
        except (json.JSONDecodeError, RecursionError):
            value = None
        for member in cls:
            if value is not None and not isinstance(member.value, str) and member.value == value:
                return member
    raise ValueError(f"{identifier} is not a valid name or value for the enum {cls.__name__}")


def _python_literal(text: str) -> Any:
    """``ast.literal_eval``, also after turning bare JSON ``true/false/null`` into Python's."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if not _WORD.search(text):
        raise ValueError(text)
    out, quote, i = [], "", 0
    while i < len(text):  # replace the words outside string literals only
        ch = text[i]
        if quote:
            if ch == "\\":
                out.append(text[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        else:
            m = _WORD.match(text, i)
            if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
                out.append(_JSON_WORDS[m.group(1)])
                i = m.end()
                continue
        out.append(ch)
        i += 1
    try:
        return ast.literal_eval("".join(out))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(text) from None


def _balanced(text: str, start: int) -> str | None:
    """The bracketed span opening at ``text[start]``, skipping brackets inside strings."""
    opening = text[start]
    closing = "}" if opening == "{" else "]"
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    return None


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _python_literal(text)


def loads_lenient(text: str) -> Any:
    """Read a JSON value the way DSPy's ``json_repair.loads`` does for well-formed answers.

    Returns :data:`NOT_PARSED` (``""``) when nothing can be read, as ``json_repair`` does.
    Tries, in order: JSON; the inside of a Markdown code fence; a Python literal; the first
    ``{...}`` or ``[...]`` that reads as a value, with text around it.
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        pass
    fence = _FENCE.match(stripped)
    if fence:
        stripped = fence.group(1).strip()
        try:
            return _load(stripped)
        except ValueError:
            pass
    # The first bracketed span that reads as a value ("[[ ## answer ## ]]" does not).
    starts = (m.start() for m in _OPENING.finditer(stripped))
    for start in itertools.islice(starts, _MAX_SPANS):
        span = _balanced(stripped, start)
        if span is None:
            continue
        try:
            return _load(span)
        except ValueError:
            continue
    return NOT_PARSED


def _literal(value: Any, annotation: Any) -> tuple[bool, Any]:
    """DSPy's Literal handling: an exact member, or a string form of one."""
    allowed = typing.get_args(annotation)
    if value in allowed:
        return True, value
    if isinstance(value, str):
        v = value.strip()
        if v.startswith(("Literal[", "str[")) and v.endswith("]"):
            v = v[v.find("[") + 1 : -1]
        if len(v) > 1 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
        if v in allowed:
            return True, v
        return False, v
    return False, value


# Types whose value read from JSON, when it already has exactly that type, validates to itself.
_SCALARS = (int, float, bool)


def parse_value(value: Any, annotation: Any) -> Any:
    """``parse_value``: a field's raw value (text, or a JSON value) as ``annotation``.

    Raises ``ValueError`` (pydantic's ``ValidationError`` is one) when it does not fit.
    """
    if annotation is str:
        return str(value)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return find_enum_member(annotation, value)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        done, value = _literal(value, annotation)
        if done:
            return value
    if not isinstance(value, str):
        return _adapter(annotation).validate_python(value)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType) and type(None) in args and str in args:
        return _adapter(annotation).validate_python(value)
    candidate = loads_lenient(value)
    if type(candidate) is annotation and annotation in _SCALARS:
        return candidate  # what pydantic's validation returns for it, without the call
    if candidate == NOT_PARSED and value != "":
        try:
            candidate = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            candidate = value
    try:
        return _adapter(annotation).validate_python(candidate)
    except pydantic.ValidationError as error:
        if not _is_custom_type(annotation) or candidate is value:
            raise
        # A custom type (``Code``) may read the text itself: ``[1, 2]`` in a fence is code.
        try:
            return _adapter(annotation).validate_python(value)
        except pydantic.ValidationError:
            raise error from None


def _is_custom_type(annotation: Any) -> bool:
    from dspex.adapters._types import _Type

    return isinstance(annotation, type) and issubclass(annotation, _Type)


def output_defaults(fields: Mapping[str, Field], parsed: Mapping[str, Any]) -> dict[str, Any]:
    """``apply_output_field_defaults``: the parsed fields in signature order; a missing field
    takes its declared default, else ``None`` when its type allows it."""
    out = {}
    for name, f in fields.items():
        default = getattr(f, "default", PydanticUndefined)
        if name in parsed:
            out[name] = parsed[name]
        elif default is not PydanticUndefined:
            out[name] = copy.deepcopy(default)
        elif allows_none(f.annotation):
            out[name] = None
    return out
