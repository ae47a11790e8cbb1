"""The string form of a signature: ``"question, context: list[str] -> answer: int"``."""

from __future__ import annotations

import ast
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union

from dspex.errors import SignatureError

__all__ = ["caller_names", "parse_signature_string"]

# How far up the stack a string signature's type names are looked for (as DSPy does).
_MAX_FRAMES = 100

Lookup = Callable[[str], Any]

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
    "set": set,
    "frozenset": frozenset,
    "Set": set,
    "FrozenSet": frozenset,
    "NoneType": type(None),
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
    """Evaluate a type expression from a restricted AST (no arbitrary code runs: names are
    looked up, attributes read from modules and classes, subscripts applied to types)."""
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise SignatureError(
                f"Unknown type {node.id!r} in signature {spec!r}. Built-in names: "
                f"{sorted(k for k in _TYPE_NAMES if k[0].islower())}, Optional, Literal; "
                f"import it where the signature is made, or pass "
                f"custom_types={{{node.id!r}: {node.id}}}."
            )
        return names[node.id]
    if isinstance(node, ast.Attribute):
        dotted = ast.unparse(node)
        if dotted in names:
            return names[dotted]
        base = _eval_type(node.value, names, spec)
        if isinstance(base, types.ModuleType | type) and hasattr(base, node.attr):
            return getattr(base, node.attr)
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


class _Names(dict[str, Any]):
    """Type names: the built-in ones and ``custom_types``, then the caller's (``lookup``)."""

    def __init__(self, base: Mapping[str, Any], lookup: Lookup | None) -> None:
        super().__init__(base)
        self._lookup = lookup

    def __missing__(self, key: str) -> Any:
        found = self._lookup(key) if self._lookup is not None else None
        if found is None:
            raise KeyError(key)
        self[key] = found
        return found

    def __contains__(self, key: object) -> bool:
        if super().__contains__(key):
            return True
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True


# Frames running code from this package are skipped: the names wanted are the caller's.
_PACKAGE_DIRS = tuple(
    {str(Path(__file__).parent.parent), str(Path(__file__).resolve().parent.parent)}
)


def caller_names() -> Lookup:
    """A lookup of names in the frames that called into dspex (locals, then globals, up to
    100 frames out), so ``Signature("when: datetime -> ...")`` finds the caller's
    ``datetime`` as DSPy's does. Only types, typing constructs and modules are returned;
    nothing is imported or called."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIRS):
        frame = frame.f_back
    start = frame

    def lookup(name: str) -> Any:
        f, depth = start, 0
        while f is not None and depth < _MAX_FRAMES:
            for space in (f.f_locals, f.f_globals):
                if name in space and _is_type_like(space[name]):
                    return space[name]
            f, depth = f.f_back, depth + 1
        module = sys.modules.get(name)  # an already-imported module, never a new import
        return module

    return lookup


def _is_type_like(value: Any) -> bool:
    return (
        isinstance(value, type | types.ModuleType | types.GenericAlias | types.UnionType)
        or typing.get_origin(value) is not None
        or type(value).__module__ == "typing"
    )


def parse_signature_string(
    spec: str, custom_types: Mapping[str, Any] | None = None, lookup: Lookup | None = None
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Parse ``"a, b: int -> c: list[str]"`` into input and output ``(name, type)`` lists.

    Names resolve from the built-in ones, then ``custom_types``, then ``lookup`` (see
    :func:`caller_names`).
    """
    if spec.count("->") != 1:
        raise SignatureError(
            f"Invalid signature {spec!r}: write it as 'inputs -> outputs', e.g. "
            "'question, context: list[str] -> answer: int'."
        )
    names = _Names({**_TYPE_NAMES, **(custom_types or {})}, lookup)
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
