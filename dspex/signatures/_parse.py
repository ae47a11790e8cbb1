"""The string form of a signature: ``"question, context: list[str] -> answer: int"``."""

from __future__ import annotations

import ast
import typing
from collections.abc import Mapping
from typing import Any, Literal, Optional, Union

from dspex.errors import SignatureError

__all__ = ["parse_signature_string"]

_TYPE_NAMES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
    "Optional": Optional,
    "Union": Union,
    "Literal": Literal,
    "Any": Any,
    "None": type(None),
}


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _eval_type(node: ast.expr, names: Mapping[str, Any], spec: str) -> Any:
    """Evaluate a type expression from a restricted AST (no arbitrary code runs)."""
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise SignatureError(
                f"Unknown type {node.id!r} in signature {spec!r}. Built-in names: "
                f"{sorted(k for k in _TYPE_NAMES if k[0].islower())}, Optional, Literal; pass "
                f"custom_types={{{node.id!r}: {node.id}}} for your own types."
            )
        return names[node.id]
    if isinstance(node, ast.Attribute):
        dotted = ast.unparse(node)
        if dotted in names:
            return names[dotted]
        raise SignatureError(f"Unknown type {dotted!r} in signature {spec!r}.")
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_eval_type(e, names, spec) for e in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _eval_type(node.left, names, spec), _eval_type(node.right, names, spec)
        return Union[left, right]  # noqa: UP007 - built from runtime values
    if isinstance(node, ast.Subscript):
        base = _eval_type(node.value, names, spec)
        args = _eval_type(node.slice, names, spec)
        try:
            return base[args]
        except TypeError as e:
            raise SignatureError(f"Invalid type {ast.unparse(node)!r} in {spec!r}: {e}") from None
    raise SignatureError(f"Cannot read type {ast.unparse(node)!r} in signature {spec!r}.")


def _parse_field(item: str, names: Mapping[str, Any], spec: str) -> tuple[str, Any]:
    name, sep, type_text = item.partition(":")
    name = name.strip()
    if not sep:
        return name, str
    try:
        node = ast.parse(type_text.strip(), mode="eval").body
    except SyntaxError:
        raise SignatureError(
            f"Invalid type {type_text.strip()!r} for field {name!r} in {spec!r}."
        ) from None
    return name, _eval_type(node, names, spec)


def parse_signature_string(
    spec: str, custom_types: Mapping[str, Any] | None = None
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Parse ``"a, b: int -> c: list[str]"`` into input and output ``(name, type)`` lists."""
    if spec.count("->") != 1:
        raise SignatureError(
            f"Invalid signature {spec!r}: write it as 'inputs -> outputs', e.g. "
            "'question, context: list[str] -> answer: int'."
        )
    names = {**_TYPE_NAMES, **(custom_types or {})}
    left, right = spec.split("->")
    inputs = [_parse_field(item, names, spec) for item in _split_top_level(left)]
    outputs = [_parse_field(item, names, spec) for item in _split_top_level(right)]
    return inputs, outputs


def resolve_annotations(
    cls: type, own: Mapping[str, Any], localns: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Resolve a class body's annotations, including string ones (``from __future__``).

    ``localns`` is the namespace the class was defined in, so that types local to a function
    resolve too.
    """
    try:
        hints = typing.get_type_hints(cls, localns=dict(localns or {}), include_extras=True)
    except NameError as e:
        raise SignatureError(
            f"Signature {cls.__name__}: cannot resolve a type annotation ({e}). Define the "
            "types used by the signature at module level."
        ) from None
    return {name: hints.get(name, own[name]) for name in own}
