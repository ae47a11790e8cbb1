"""Field declarations: ``InputField``/``OutputField`` markers and the resolved ``Field``."""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Union

import pydantic

from dspex.errors import SignatureError

__all__ = ["Field", "FieldKind", "InputField", "OutputField", "check_type", "type_name"]

FieldKind = Literal["input", "output"]

# Keyword arguments of pydantic.Field that constrain a value; passed through for validation.
_CONSTRAINTS = frozenset(
    {
        "gt",
        "ge",
        "lt",
        "le",
        "multiple_of",
        "min_length",
        "max_length",
        "pattern",
        "strict",
        "allow_inf_nan",
        "max_digits",
        "decimal_places",
    }
)


@dataclass(frozen=True)
class _FieldMarker:
    """What ``InputField(...)``/``OutputField(...)`` return in a class body."""

    kind: FieldKind
    desc: str | None = None
    prefix: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)


def _marker(kind: FieldKind, desc: str | None, prefix: str | None, kw: dict[str, Any]) -> Any:
    unknown = sorted(set(kw) - _CONSTRAINTS)
    if unknown:
        raise SignatureError(
            f"{kind.capitalize()}Field got unknown argument(s) {unknown}; accepted: desc, prefix "
            f"and the pydantic constraints {sorted(_CONSTRAINTS)}."
        )
    return _FieldMarker(kind=kind, desc=desc, prefix=prefix, constraints=dict(kw))


def InputField(*, desc: str | None = None, prefix: str | None = None, **constraints: Any) -> Any:
    """Declare an input field in a class-based signature.

    Example:
        >>> import dspex
        >>> class QA(dspex.Signature):
        ...     question: str = dspex.InputField(desc="a question about arithmetic")
        ...     answer: int = dspex.OutputField(ge=0)
        >>> list(QA.input_fields), list(QA.output_fields)
        (['question'], ['answer'])
    """
    return _marker("input", desc, prefix, constraints)


def OutputField(*, desc: str | None = None, prefix: str | None = None, **constraints: Any) -> Any:
    """Declare an output field; ``constraints`` (``ge``, ``max_length``, ...) are validated."""
    return _marker("output", desc, prefix, constraints)


@dataclass(frozen=True)
class Field:
    """A resolved signature field."""

    name: str
    annotation: Any
    kind: FieldKind
    desc: str | None = None
    prefix: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Field:
        return replace(self, **changes)

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)

    def pydantic_field(self) -> tuple[Any, Any]:
        """The ``(type, FieldInfo)`` pair for ``pydantic.create_model``."""
        return (self.annotation, pydantic.Field(description=self.desc, **self.constraints))


_PRIMITIVES: tuple[type, ...] = (str, int, float, bool, type(None))


def check_type(annotation: Any, where: str) -> None:
    """Raise ``SignatureError`` unless ``annotation`` is a type dspex can render and validate.

    Accepted: str/int/float/bool, ``Literal``, ``Enum``, ``list[...]``, ``dict[str, ...]``,
    ``tuple[...]``, ``Optional``/unions of these, ``Any``, and pydantic models.
    """
    if annotation is Any or annotation in _PRIMITIVES:
        return
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum | pydantic.BaseModel):
            return
        if annotation in (list, dict, tuple):
            return
        raise SignatureError(
            f"{where}: type {annotation.__name__!r} is not supported. Use str, int, float, bool, "
            "Literal[...], an Enum, list[...], dict[str, ...], Optional[...] or a pydantic model."
        )
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return
    if origin in (list, tuple, set, frozenset, dict, Union, types.UnionType):
        if origin is dict and args and args[0] is not str:
            raise SignatureError(f"{where}: dict keys must be str (JSON objects), got {args[0]!r}.")
        for arg in args:
            if arg is not Ellipsis:
                check_type(arg, where)
        return
    if origin is typing.Annotated:
        check_type(args[0], where)
        return
    raise SignatureError(f"{where}: unsupported type annotation {annotation!r}.")


def type_name(annotation: Any) -> str:
    """A short, readable name for a type, as shown in prompts (``list[str]``, ``int``)."""
    if annotation is Any:
        return "Any"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        inner = " | ".join(type_name(a) for a in non_none)
        return f"Optional[{inner}]" if len(non_none) < len(args) else inner
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[" + ", ".join(type_name(a) for a in args) + "]"
    return str(annotation)
