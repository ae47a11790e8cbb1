"""``Signature``: the typed contract of a predictor, in class form or string form."""

from __future__ import annotations

import inspect
import keyword
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import pydantic

from dspex.errors import SignatureError
from dspex.signatures._field import Field, FieldKind, _FieldMarker, check_type
from dspex.signatures._parse import parse_signature_string, resolve_annotations

__all__ = ["Signature", "ensure_signature", "make_signature"]


def _default_instructions(inputs: list[str], outputs: list[str]) -> str:
    ins = ", ".join(f"`{n}`" for n in inputs)
    outs = ", ".join(f"`{n}`" for n in outputs)
    return f"Given the fields {ins}, produce the fields {outs}."


# Methods and properties of Example/Prediction that a field of the same name would shadow.
_RESERVED = frozenset(
    {
        "completions",
        "copy",
        "get",
        "inputs",
        "input_keys",
        "items",
        "keys",
        "labels",
        "to_dict",
        "toDict",
        "usage",
        "values",
        "with_inputs",
        "with_usage",
        "without",
    }
)


def _check_name(name: str, where: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(
            f"{where}: field name {name!r} is not a valid Python identifier; use names like "
            "'question' or 'answer_text'."
        )
    if name.startswith("_"):
        raise SignatureError(f"{where}: field name {name!r} must not start with '_'.")
    if name in _RESERVED:
        raise SignatureError(
            f"{where}: field name {name!r} would hide Prediction.{name}; choose another name "
            f"(reserved: {sorted(_RESERVED)})."
        )


class _classproperty:
    """A read-only property of the class (``classmethod`` + ``property`` is gone in 3.13)."""

    def __init__(self, fget: Any) -> None:
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj: Any, owner: type) -> Any:
        return self.fget(owner)


class Signature:
    """The inputs, outputs and instructions of a predictor.

    Subclass it (the docstring is the instructions) or build one from a string. Signatures are
    classes and are never mutated: ``with_instructions``, ``append``, ``prepend`` and ``delete``
    return new ones. Invalid signatures raise ``SignatureError`` where they are defined.

    Example:
        >>> import dspex
        >>> class QA(dspex.Signature):
        ...     '''Answer the question.'''
        ...     question: str = dspex.InputField()
        ...     answer: int = dspex.OutputField(desc="a whole number")
        >>> QA.signature
        'question -> answer'
        >>> sig = dspex.Signature("question, context: list[str] -> answer: int")
        >>> sig.output_fields["answer"].type_name
        'int'
    """

    instructions: ClassVar[str] = ""
    fields: ClassVar[dict[str, Field]] = {}

    def __new__(cls, spec: str | None = None, instructions: str | None = None, **kw: Any) -> Any:
        # DSPy compatibility: Signature("q -> a") builds a signature *class*.
        if cls is Signature and isinstance(spec, str):
            return make_signature(spec, instructions, **kw)
        raise SignatureError(
            "Signatures are classes and are not instantiated; pass the class itself to a "
            "module (dspex.Predict(MySignature)), or build one with Signature('q -> a')."
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_dspex_prebuilt"):
            return  # made by _build from already-validated fields
        own = dict(inspect.get_annotations(cls))
        own = {k: v for k, v in own.items() if k not in ("instructions", "fields")}
        # The frame defining the class, so that string annotations naming local types resolve.
        defining = sys._getframe(1).f_locals if own else None
        resolved = resolve_annotations(cls, own, defining) if own else {}
        fields: dict[str, Field] = dict(cls.fields)  # inherited, in order
        for name, annotation in resolved.items():
            marker = cls.__dict__.get(name)
            if not isinstance(marker, _FieldMarker):
                raise SignatureError(
                    f"Signature {cls.__name__}: field {name!r} must be declared as "
                    f"`{name}: type = dspex.InputField()` or `dspex.OutputField()`."
                )
            _check_name(name, f"Signature {cls.__name__}")
            check_type(annotation, f"Signature {cls.__name__}, field {name!r}")
            fields[name] = Field(
                name=name,
                annotation=annotation,
                kind=marker.kind,
                desc=marker.desc,
                prefix=marker.prefix,
                constraints=dict(marker.constraints),
            )
            delattr(cls, name)  # the marker is not a class attribute of the signature
        for name, value in cls.__dict__.items():
            if isinstance(value, _FieldMarker):
                raise SignatureError(
                    f"Signature {cls.__name__}: field {name!r} has no type annotation; write "
                    f"`{name}: str = dspex.{value.kind.capitalize()}Field()`."
                )
        cls.fields = _ordered(fields)
        _validate(cls.__name__, cls.fields)
        doc = cls.__dict__.get("__doc__")
        if doc is not None:
            cls.instructions = _clean_doc(doc)
        elif "instructions" not in cls.__dict__ or not cls.instructions:
            cls.instructions = _default_instructions(
                list(cls.input_fields), list(cls.output_fields)
            )

    # -- views -----------------------------------------------------------------------------
    @classmethod
    def _fields_of(cls, kind: FieldKind) -> dict[str, Field]:
        # Cached per class (signatures never change): adapters read these on every call.
        cached: dict[str, dict[str, Field]] | None = cls.__dict__.get("_dspex_fields_by_kind")
        if cached is None:
            cached = {
                k: {n: f for n, f in cls.fields.items() if f.kind == k} for k in ("input", "output")
            }
            cls._dspex_fields_by_kind = cached  # type: ignore[attr-defined]
        return cached[kind]

    @_classproperty
    def input_fields(cls) -> dict[str, Field]:
        """The input fields, in order."""
        return cls._fields_of("input")

    @_classproperty
    def output_fields(cls) -> dict[str, Field]:
        """The output fields, in order."""
        return cls._fields_of("output")

    @_classproperty
    def signature(cls) -> str:
        """The short form, ``"question -> answer"``."""
        return f"{', '.join(cls.input_fields)} -> {', '.join(cls.output_fields)}"

    @classmethod
    def output_model(cls) -> type[pydantic.BaseModel]:
        """A pydantic model that validates the output fields (cached per signature)."""
        model = cls.__dict__.get("_dspex_output_model")
        if model is None:
            model = _output_model(cls)
            cls._dspex_output_model = model  # type: ignore[attr-defined]
        return model

    # -- derived signatures ---------------------------------------------------------------
    @classmethod
    def _derive(cls, fields: dict[str, Field], instructions: str | None = None) -> type[Signature]:
        return _build(cls.__name__, fields, instructions or cls.instructions)

    @classmethod
    def with_instructions(cls, instructions: str) -> type[Signature]:
        """A copy with new instructions."""
        return _build(cls.__name__, dict(cls.fields), instructions)

    @classmethod
    def with_updated_fields(cls, name: str, **changes: Any) -> type[Signature]:
        """A copy with field ``name`` changed (``desc=``, ``prefix=``, ``annotation=``)."""
        if name not in cls.fields:
            raise SignatureError(
                f"{cls.__name__} has no field {name!r}; fields: {list(cls.fields)}."
            )
        fields = dict(cls.fields)
        fields[name] = fields[name].with_(**changes)
        return cls._derive(fields)

    @classmethod
    def insert(cls, index: int, name: str, field: Any, type_: Any = str) -> type[Signature]:
        """A copy with a new field at ``index`` among the fields of its kind."""
        if not isinstance(field, _FieldMarker):
            raise SignatureError(
                f"insert({name!r}, ...): pass dspex.InputField(...) or dspex.OutputField(...)."
            )
        if name in cls.fields:
            raise SignatureError(f"{cls.__name__} already has a field {name!r}.")
        _check_name(name, cls.__name__)
        check_type(type_, f"{cls.__name__}, field {name!r}")
        new = Field(name, type_, field.kind, field.desc, field.prefix, dict(field.constraints))
        same = [f for f in cls.fields.values() if f.kind == field.kind]
        other = [f for f in cls.fields.values() if f.kind != field.kind]
        pos = index if index >= 0 else len(same) + 1 + index
        same.insert(max(0, min(pos, len(same))), new)
        return cls._derive({f.name: f for f in (*same, *other)})

    @classmethod
    def prepend(cls, name: str, field: Any, type_: Any = str) -> type[Signature]:
        """A copy with a new field first among the fields of its kind."""
        return cls.insert(0, name, field, type_)

    @classmethod
    def append(cls, name: str, field: Any, type_: Any = str) -> type[Signature]:
        """A copy with a new field last among the fields of its kind."""
        return cls.insert(-1, name, field, type_)

    @classmethod
    def delete(cls, name: str) -> type[Signature]:
        """A copy without field ``name``."""
        if name not in cls.fields:
            raise SignatureError(
                f"{cls.__name__} has no field {name!r}; fields: {list(cls.fields)}."
            )
        return cls._derive({n: f for n, f in cls.fields.items() if n != name})

    # -- state ------------------------------------------------------------------------------
    @classmethod
    def dump_state(cls) -> dict[str, Any]:
        """JSON-safe state: instructions and each field's name, kind, type, desc, prefix."""
        return {
            "instructions": cls.instructions,
            "fields": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "type": f.type_name,
                    "desc": f.desc,
                    "prefix": f.prefix,
                }
                for f in cls.fields.values()
            ],
        }

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> type[Signature]:
        """A copy with the saved instructions and field descriptions (types stay from code)."""
        saved = {f["name"]: f for f in state.get("fields", [])}
        if saved and set(saved) != set(cls.fields):
            raise SignatureError(
                f"Saved signature has fields {sorted(saved)} but {cls.__name__} has "
                f"{sorted(cls.fields)}; load state into a program with the same signature."
            )
        fields = {
            n: f.with_(
                desc=saved.get(n, {}).get("desc", f.desc),
                prefix=saved.get(n, {}).get("prefix", f.prefix),
            )
            for n, f in cls.fields.items()
        }
        return cls._derive(fields, state.get("instructions") or cls.instructions)

    @classmethod
    def equals(cls, other: type[Signature]) -> bool:
        return cls.dump_state() == other.dump_state()

    def __class_getitem__(cls, item: Any) -> Any:  # pragma: no cover - guard against misuse
        raise SignatureError("Signatures are not generic; declare fields in the class body.")


def _clean_doc(doc: str) -> str:
    return inspect.cleandoc(doc).strip()


def _ordered(fields: dict[str, Field]) -> dict[str, Field]:
    """Inputs first, then outputs, each in declaration order."""
    ins = {n: f for n, f in fields.items() if f.kind == "input"}
    outs = {n: f for n, f in fields.items() if f.kind == "output"}
    return {**ins, **outs}


def _validate(name: str, fields: Mapping[str, Field]) -> None:
    kinds = [f.kind for f in fields.values()]
    if "input" not in kinds:
        raise SignatureError(
            f"Signature {name} has no input fields; declare at least one with dspex.InputField()."
        )
    if "output" not in kinds:
        raise SignatureError(
            f"Signature {name} has no output fields; declare at least one with dspex.OutputField()."
        )


def _build(name: str, fields: Mapping[str, Field], instructions: str) -> type[Signature]:
    """Create a signature class from resolved fields (no re-validation of markers needed)."""
    _validate(name, fields)
    ns: dict[str, Any] = {"__doc__": None, "__module__": __name__, "_dspex_prebuilt": True}
    cls: type[Signature] = type(name, (Signature,), ns)
    cls.fields = _ordered(dict(fields))
    cls.instructions = instructions
    return cls


def _output_model(sig: type[Signature]) -> type[pydantic.BaseModel]:
    definitions: dict[str, Any] = {n: f.pydantic_field() for n, f in sig.output_fields.items()}
    return pydantic.create_model(f"{sig.__name__}Outputs", **definitions)


def make_signature(
    spec: str | Mapping[str, tuple[Any, Any]],
    instructions: str | None = None,
    *,
    name: str = "StringSignature",
    custom_types: Mapping[str, Any] | None = None,
) -> type[Signature]:
    """Build a signature from ``"a, b: int -> c"`` or a ``{name: (type, Field)}`` mapping."""
    fields: dict[str, Field] = {}
    if isinstance(spec, str):
        inputs, outputs = parse_signature_string(spec, custom_types)
        pairs = [(n, t, "input") for n, t in inputs] + [(n, t, "output") for n, t in outputs]
        for fname, ftype, kind in pairs:
            if fname in fields:
                raise SignatureError(f"Signature {spec!r} declares field {fname!r} twice.")
            _check_name(fname, f"Signature {spec!r}")
            check_type(ftype, f"Signature {spec!r}, field {fname!r}")
            fields[fname] = Field(fname, ftype, kind)  # type: ignore[arg-type]
    else:
        for fname, (ftype, marker) in spec.items():
            _check_name(fname, name)
            check_type(ftype, f"{name}, field {fname!r}")
            if not isinstance(marker, _FieldMarker):
                raise SignatureError(f"{name}: field {fname!r} needs InputField()/OutputField().")
            fields[fname] = Field(
                fname, ftype, marker.kind, marker.desc, marker.prefix, dict(marker.constraints)
            )
    _validate(repr(spec) if isinstance(spec, str) else name, fields)
    ordered = _ordered(fields)
    text = instructions or _default_instructions(
        [n for n, f in ordered.items() if f.kind == "input"],
        [n for n, f in ordered.items() if f.kind == "output"],
    )
    return _build(name, ordered, text)


def ensure_signature(
    sig: str | type[Signature], instructions: str | None = None
) -> type[Signature]:
    """Accept a signature class or its string form."""
    if isinstance(sig, str):
        return make_signature(sig, instructions)
    if isinstance(sig, type) and issubclass(sig, Signature) and sig is not Signature:
        return sig.with_instructions(instructions) if instructions else sig
    raise SignatureError(
        f"Expected a Signature subclass or a string like 'question -> answer', got {sig!r}."
    )
