"""Field declarations: ``InputField``/``OutputField`` markers and the resolved ``Field``."""

from __future__ import annotations

import datetime
import decimal
import enum
import pathlib
import re
import types
import typing
import uuid
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Union

import pydantic
from pydantic_core import PydanticUndefined

from dspex.errors import SignatureError

__all__ = [
    "Field",
    "FieldKind",
    "InputField",
    "OutputField",
    "allows_none",
    "check_type",
    "infer_prefix",
    "type_name",
]

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


# Arguments DSPy's InputField/OutputField accept that have no effect there (DSPy warns that
# they are deprecated); accepted and ignored here too, with the same warning.
_DEPRECATED = ("format", "parser")


@dataclass(frozen=True)
class _FieldMarker:
    """What ``InputField(...)``/``OutputField(...)`` return in a class body."""

    kind: FieldKind
    desc: str | None = None
    prefix: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)
    default: Any = PydanticUndefined
    annotation: Any = None


def _marker(kind: FieldKind, desc: str | None, prefix: str | None, kw: dict[str, Any]) -> Any:
    default = kw.pop("default", PydanticUndefined)
    description = kw.pop("description", None)
    annotation = kw.pop("annotation", None)
    for name in _DEPRECATED:
        if kw.pop(name, None) is not None:
            warnings.warn(
                f"{kind.capitalize()}Field({name}=...) has no effect (DSPy deprecated it too).",
                DeprecationWarning,
                stacklevel=3,
            )
    unknown = sorted(set(kw) - _CONSTRAINTS)
    if unknown:
        raise SignatureError(
            f"{kind.capitalize()}Field got unknown argument(s) {unknown}; accepted: desc, prefix, "
            f"default, description and the pydantic constraints {sorted(_CONSTRAINTS)}."
        )
    return _FieldMarker(
        kind=kind,
        desc=desc if desc is not None else description,
        prefix=prefix,
        constraints=dict(kw),
        default=default,
        annotation=annotation,
    )


def InputField(*, desc: str | None = None, prefix: str | None = None, **kwargs: Any) -> Any:
    """Declare an input field in a class-based signature.

    Args:
        desc: what the field holds, shown to the LM (``description=`` is accepted too).
        prefix: the field's label in prompts that use one.
        **kwargs: ``default=`` (the value used when a call leaves the input out) and the
            pydantic constraints (``ge``, ``max_length``, ...), which are validated.

    An input without a default may still be left out of a call when its type allows
    ``None`` (``Optional[str]``); any other missing input fails before the LM is called.

    Example:
        >>> import dspex
        >>> class QA(dspex.Signature):
        ...     question: str = dspex.InputField(desc="a question about arithmetic")
        ...     style: str = dspex.InputField(default="terse")
        ...     answer: int = dspex.OutputField(ge=0)
        >>> list(QA.input_fields), QA.input_fields["style"].default
        (['question', 'style'], 'terse')
    """
    return _marker("input", desc, prefix, kwargs)


def OutputField(*, desc: str | None = None, prefix: str | None = None, **kwargs: Any) -> Any:
    """Declare an output field; ``constraints`` (``ge``, ``max_length``, ...) are validated
    and ``default=`` fills the field when an answer leaves it out."""
    return _marker("output", desc, prefix, kwargs)


@dataclass(frozen=True)
class Field:
    """A resolved signature field.

    Attributes:
        name: the field's name.
        annotation: its type (``str`` when the class body gave none).
        kind: ``"input"`` or ``"output"``.
        desc: its description, or ``None``.
        prefix: its label, or ``None``.
        constraints: pydantic constraints (``ge``, ``max_length``, ...).
        default: the value used when it is left out; ``PydanticUndefined`` (as in pydantic,
            and so in DSPy) when it has none.
    """

    name: str
    annotation: Any
    kind: FieldKind
    desc: str | None = None
    prefix: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)
    default: Any = PydanticUndefined

    def with_(self, **changes: Any) -> Field:
        return replace(self, **changes)

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)

    @property
    def has_default(self) -> bool:
        return self.default is not PydanticUndefined

    def is_required(self) -> bool:
        """Whether a call must pass this (input) field: no default, and ``None`` not allowed."""
        return not self.has_default and not allows_none(self.annotation)

    @property
    def json_schema_extra(self) -> dict[str, Any]:
        """The field as DSPy describes it (``fields[name].json_schema_extra["desc"]``), with
        DSPy's defaults for a missing prefix (``"Question:"``) and desc (``"${question}"``)."""
        extra: dict[str, Any] = {
            "__dspy_field_type": self.kind,
            "prefix": self.prefix if self.prefix is not None else infer_prefix(self.name) + ":",
            "desc": self.desc if self.desc is not None else f"${{{self.name}}}",
        }
        if self.constraints:
            extra["constraints"] = ", ".join(
                f"{_CONSTRAINT_WORDS.get(k, k + ': ')}{v}" for k, v in self.constraints.items()
            )
        return extra

    @property
    def description(self) -> str | None:
        return self.desc

    def pydantic_field(self) -> tuple[Any, Any]:
        """The ``(type, FieldInfo)`` pair for ``pydantic.create_model``."""
        return (
            self.annotation,
            pydantic.Field(self.default, description=self.desc, **self.constraints),
        )


_CONSTRAINT_WORDS = {
    "gt": "greater than: ",
    "ge": "greater than or equal to: ",
    "lt": "less than: ",
    "le": "less than or equal to: ",
    "min_length": "minimum length: ",
    "max_length": "maximum length: ",
    "multiple_of": "a multiple of the given number: ",
    "allow_inf_nan": "allow 'inf', '-inf', 'nan' values: ",
}


def allows_none(annotation: Any) -> bool:
    """Whether ``None`` is a valid value of ``annotation`` (``Optional[...]``, ``Any``...)."""
    if annotation is Any or annotation is None or annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(allows_none(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return allows_none(typing.get_args(annotation)[0])
    if origin is Literal:
        return None in typing.get_args(annotation)
    return False


def infer_prefix(name: str) -> str:
    """A field's label from its name, as DSPy infers it: ``question_text`` and
    ``questionText`` become ``Question Text``; acronyms stay (``URLAddress``: ``URL Address``).
    """
    spaced = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", spaced)
    spaced = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", spaced)
    spaced = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", spaced)
    return " ".join(w if w.isupper() else w.capitalize() for w in spaced.split("_"))


_PRIMITIVES: tuple[type, ...] = (str, int, float, bool, type(None))
# Value types pydantic validates from JSON strings, which prompts and answers can carry.
_VALUE_TYPES: tuple[type, ...] = (
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    pathlib.PurePath,
    uuid.UUID,
    decimal.Decimal,
)


def _pydantic_can_validate(annotation: type) -> bool:
    """Whether pydantic builds a validator for ``annotation`` (a dataclass, a TypedDict, a
    class with ``__get_pydantic_core_schema__``, ...)."""
    try:
        pydantic.TypeAdapter(annotation)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError):
        return False
    return True


def check_type(annotation: Any, where: str) -> None:
    """Raise ``SignatureError`` unless ``annotation`` is a type dspex can render and validate.

    Accepted: str/int/float/bool, ``Literal``, ``Enum``, ``list[...]``, ``dict[str, ...]``,
    ``tuple[...]``, ``Optional``/unions of these, ``Any``, pydantic models, ``datetime``,
    ``date``, ``time``, ``timedelta``, ``Path``, ``UUID``, ``Decimal``, and other classes
    pydantic validates (dataclasses, TypedDicts, ...).
    """
    if annotation is Any or annotation in _PRIMITIVES:
        return
    if isinstance(annotation, type):
        if issubclass(annotation, (enum.Enum, pydantic.BaseModel, *_VALUE_TYPES)):
            return
        if annotation in (list, dict, tuple, set, frozenset):
            return
        if _pydantic_can_validate(annotation):
            return
        raise SignatureError(
            f"{where}: type {annotation.__name__!r} is not supported: pydantic cannot validate "
            "it. Use str, int, float, bool, Literal[...], an Enum, list[...], dict[str, ...], "
            "Optional[...], datetime/date/Path, a dataclass or a pydantic model."
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
