"""``Signature``: the typed contract of a predictor, in class form or string form."""

from __future__ import annotations

import functools
import inspect
import keyword
import sys
import typing
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import pydantic

from dspex.errors import SignatureError
from dspex.signatures._field import Field, FieldKind, _FieldMarker, check_type
from dspex.signatures._parse import caller_names, parse_signature_string, resolve_annotations

__all__ = ["Signature", "ensure_signature", "make_signature"]


def _default_instructions(inputs: list[str], outputs: list[str]) -> str:
    ins = ", ".join(f"`{n}`" for n in inputs)
    outs = ", ".join(f"`{n}`" for n in outputs)
    return f"Given the fields {ins}, produce the fields {outs}."


def _check_name(name: str, where: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(
            f"{where}: field name {name!r} is not a valid Python identifier; use names like "
            "'question' or 'answer_text'."
        )
    if name.startswith("_"):
        raise SignatureError(f"{where}: field name {name!r} must not start with '_'.")
    if name in _signature_attributes():
        raise SignatureError(
            f"{where}: field name {name!r} collides with the reserved Signature attribute "
            f"Signature.{name}; choose another name."
        )


@functools.cache
def _signature_attributes() -> frozenset[str]:
    """Public attributes of ``Signature`` (``instructions``, ``fields``, ``append``...), which a
    field of the same name would shadow."""
    return frozenset(n for n in dir(Signature) if not n.startswith("_"))


class _classproperty:
    """A read-only property of the class (``classmethod`` + ``property`` is gone in 3.13)."""

    def __init__(self, fget: Any) -> None:
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj: Any, owner: type) -> Any:
        return self.fget(owner)


def _fields_by_kind(cls: Any) -> tuple[Any, dict[str, Field], dict[str, Field]]:
    """``(fields, inputs, outputs)`` of a signature class, made once per class.

    Kept on the class itself and checked against its ``fields`` by identity, so a subclass
    (which has a ``fields`` of its own) never reads its parent's views.
    """
    fields = cls.fields
    views: tuple[Any, dict[str, Field], dict[str, Field]] | None = cls.__dict__.get(
        "_dspex_fields_by_kind"
    )
    if views is None or views[0] is not fields:
        inputs = {n: f for n, f in fields.items() if f.kind == "input"}
        outputs = {n: f for n, f in fields.items() if f.kind == "output"}
        views = (fields, inputs, outputs)
        cls._dspex_fields_by_kind = views
    return views


class _FieldsOfKind:
    """``Signature.input_fields``/``output_fields``: a view of ``fields``, read by adapters
    several times per call, so one attribute read and one identity check on the fast path."""

    def __init__(self, index: int, doc: str) -> None:
        self.index = index
        self.__doc__ = doc

    def __get__(self, obj: Any, owner: Any) -> dict[str, Field]:
        views = getattr(owner, "_dspex_fields_by_kind", None)
        if views is not None and views[0] is owner.fields:
            return views[self.index]  # type: ignore[no-any-return]
        return _fields_by_kind(owner)[self.index]


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

    def __new__(
        cls,
        spec: str | Mapping[str, Any] | None = None,
        instructions: str | None = None,
        **kw: Any,
    ) -> Any:
        # DSPy compatibility: Signature("q -> a") and Signature({...}) build a signature *class*.
        if cls is Signature and isinstance(spec, str | Mapping):
            return make_signature(spec, instructions, **kw)
        raise SignatureError(
            "Signatures are classes and are not instantiated; pass the class itself to a "
            "module (dspex.Predict(MySignature)), or build one with Signature('q -> a')."
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_dspex_prebuilt"):
            return  # made by _build from already-validated fields
        markers = {n: v for n, v in cls.__dict__.items() if isinstance(v, _FieldMarker)}
        annotated = {
            k: v
            for k, v in inspect.get_annotations(cls).items()
            if k not in ("instructions", "fields") or k in markers
        }
        for name in annotated:
            if name not in markers and not _is_classvar(annotated[name]):
                raise SignatureError(
                    f"Signature {cls.__name__}: field {name!r} must be declared as "
                    f"`{name}: type = dspex.InputField()` or `dspex.OutputField()`."
                )
        typed = {n: a for n, a in annotated.items() if n in markers}
        # The frame defining the class, so that string annotations naming local types resolve.
        defining = sys._getframe(1).f_locals if typed else None
        resolved = resolve_annotations(cls, typed, defining) if typed else {}
        for name in markers:
            _check_name(name, f"Signature {cls.__name__}")
        inherited = next(b.__dict__["fields"] for b in cls.__mro__[1:] if "fields" in b.__dict__)
        fields: dict[str, Field] = dict(inherited)  # in order
        for name, marker in markers.items():  # declaration order, typed or not (as DSPy)
            # As in DSPy, a field declared without a type is a str.
            annotation = resolved.get(name, marker.annotation or str)
            check_type(annotation, f"Signature {cls.__name__}, field {name!r}")
            fields[name] = _resolve(name, annotation, marker)
            delattr(cls, name)  # the marker is not a class attribute of the signature
        cls.fields = _ordered(fields)
        _validate(cls.__name__, cls.fields)
        doc = cls.__dict__.get("__doc__")
        if doc is not None:
            cls.instructions = _clean_doc(doc)
        elif "instructions" not in cls.__dict__ or not cls.instructions:
            # As in DSPy: a subclass without a docstring keeps its parent's instructions.
            parent: type[Signature] | None = next(
                (b for b in cls.__mro__[1:] if _is_signature(b)), None
            )
            cls.instructions = (
                parent.instructions
                if parent is not None
                else _default_instructions(list(cls.input_fields), list(cls.output_fields))
            )

    # -- views -----------------------------------------------------------------------------
    @classmethod
    def _fields_of(cls, kind: FieldKind) -> dict[str, Field]:
        return _fields_by_kind(cls)[1 if kind == "input" else 2]

    input_fields = _FieldsOfKind(1, "The input fields, in order.")
    output_fields = _FieldsOfKind(2, "The output fields, in order.")

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
    def append_instructions(cls, instructions: str) -> type[Signature]:
        """A copy whose instructions are these ones after a blank line, as DSPy's."""
        return _build(cls.__name__, dict(cls.fields), f"{cls.instructions}\n\n{instructions}")

    @classmethod
    def with_updated_fields(cls, name: str, type_: Any = None, **changes: Any) -> type[Signature]:
        """A copy with field ``name`` changed: its type (``type_``, or ``annotation=``), and
        ``desc=``/``description=``, ``prefix=``, ``default=``, pydantic constraints (``ge=0``)
        or all of them at once (``constraints={...}``, which replaces the field's)."""
        if name not in cls.fields:
            raise SignatureError(
                f"{cls.__name__} has no field {name!r}; fields: {list(cls.fields)}."
            )
        current = cls.fields[name]
        if "description" in changes:
            changes.setdefault("desc", changes.pop("description"))
        if type_ is not None:
            changes["annotation"] = type_
        base = dict(changes.pop("constraints", current.constraints))  # replaced when given
        known = {"desc", "prefix", "annotation", "default"}
        extra = {k: changes.pop(k) for k in list(changes) if k not in known}
        marker = _marker_for(current.kind, {**base, **extra})  # checks the constraint names
        if "annotation" in changes:
            check_type(changes["annotation"], f"{cls.__name__}, field {name!r}")
        fields = dict(cls.fields)
        fields[name] = current.with_(constraints=dict(marker.constraints), **changes)
        return cls._derive(fields)

    @classmethod
    def insert(cls, index: int, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """A copy with a new field at ``index`` among the fields of its kind (negative indices
        count from the end, ``-1`` appends). Without ``type_`` the field is a ``str``."""
        if not isinstance(field, _FieldMarker):
            raise SignatureError(
                f"insert({name!r}, ...): pass dspex.InputField(...) or dspex.OutputField(...)."
            )
        if name in cls.fields:
            raise SignatureError(f"{cls.__name__} already has a field {name!r}.")
        _check_name(name, cls.__name__)
        annotation = type_ if type_ is not None else field.annotation or str
        check_type(annotation, f"{cls.__name__}, field {name!r}")
        new = _resolve(name, annotation, field)
        same = [f for f in cls.fields.values() if f.kind == field.kind]
        other = [f for f in cls.fields.values() if f.kind != field.kind]
        pos = index + len(same) + 1 if index < 0 else index
        if not 0 <= pos <= len(same):
            raise SignatureError(
                f"Invalid index to insert: {index}; for the {len(same)} {field.kind} field(s) "
                f"of {cls.__name__} it must be in [{-len(same) - 1}, {len(same)}]."
            )
        same.insert(pos, new)
        return cls._derive({f.name: f for f in (*same, *other)})

    @classmethod
    def prepend(cls, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """A copy with a new field first among the fields of its kind."""
        return cls.insert(0, name, field, type_)

    @classmethod
    def append(cls, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """A copy with a new field last among the fields of its kind."""
        return cls.insert(-1, name, field, type_)

    @classmethod
    def delete(cls, name: str) -> type[Signature]:
        """A copy without field ``name`` (unchanged, as in DSPy, when it has no such field)."""
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
    def equals(cls, other: Any) -> bool:
        """Same instructions and the same fields (names, kinds, types, descs, prefixes);
        ``False`` for anything that is not a signature."""
        return _is_signature(other) and cls.dump_state() == other.dump_state()

    def __class_getitem__(cls, item: Any) -> Any:  # pragma: no cover - guard against misuse
        raise SignatureError("Signatures are not generic; declare fields in the class body.")


def _is_signature(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Signature) and obj is not Signature


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return typing.get_origin(annotation) is ClassVar or annotation is ClassVar


def _resolve(name: str, annotation: Any, marker: _FieldMarker) -> Field:
    return Field(
        name=name,
        annotation=annotation,
        kind=marker.kind,
        desc=marker.desc,
        prefix=marker.prefix,
        constraints=dict(marker.constraints),
        default=marker.default,
    )


def _marker_for(kind: FieldKind, constraints: Mapping[str, Any]) -> _FieldMarker:
    from dspex.signatures._field import InputField, OutputField

    make = InputField if kind == "input" else OutputField
    marker: _FieldMarker = make(**constraints)
    return marker


def _clean_doc(doc: str) -> str:
    return inspect.cleandoc(doc).strip()


def _ordered(fields: dict[str, Field]) -> dict[str, Field]:
    """Inputs first, then outputs, each in declaration order."""
    ins = {n: f for n, f in fields.items() if f.kind == "input"}
    outs = {n: f for n, f in fields.items() if f.kind == "output"}
    return {**ins, **outs}


def _validate(name: str, fields: Mapping[str, Field]) -> None:
    # A signature may have no inputs (as in DSPy: "write a haiku"), but one without outputs
    # asks the LM for nothing, which is always a mistake.
    kinds = [f.kind for f in fields.values()]
    if "output" not in kinds:
        raise SignatureError(
            f"Signature {name} has no output fields; declare at least one with dspex.OutputField()."
        )


def _build(
    name: str, fields: Mapping[str, Field], instructions: str, *, validate: bool = True
) -> type[Signature]:
    """Create a signature class from resolved fields (no re-validation of markers needed).

    ``validate=False`` allows a signature without outputs: what an adapter renders when the
    provider fills the only output natively (tool calls), never one a user declares.
    """
    if validate:
        _validate(name, fields)
    ns: dict[str, Any] = {"__doc__": None, "__module__": __name__, "_dspex_prebuilt": True}
    cls: type[Signature] = type(name, (Signature,), ns)
    cls.fields = _ordered(dict(fields))
    cls.instructions = instructions
    return cls


def _output_model(sig: type[Signature]) -> type[pydantic.BaseModel]:
    definitions: dict[str, Any] = {n: f.pydantic_field() for n, f in sig.output_fields.items()}
    config = pydantic.ConfigDict(protected_namespaces=())  # an output may be `model_name`
    with warnings.catch_warnings():
        # An output named `copy` or `json` shadows a BaseModel method; its value is still
        # what getattr(model, name) returns, which is all this model is read with.
        warnings.filterwarnings("ignore", message="Field name .* shadows an attribute")
        return pydantic.create_model(f"{sig.__name__}Outputs", __config__=config, **definitions)


def make_signature(
    spec: str | Mapping[str, Any],
    instructions: str | None = None,
    *,
    name: str | None = None,
    signature_name: str = "StringSignature",
    custom_types: Mapping[str, Any] | None = None,
) -> type[Signature]:
    """Build a signature from ``"a, b: int -> c"`` or a mapping of fields.

    Args:
        spec: the string form, or ``{name: value}`` where a value is ``(type, InputField())``,
            an ``InputField()``/``OutputField()`` alone (a ``str`` field), or a field of
            another signature (``Signature(other.fields, "New instructions.")``).
        instructions: the instructions; by default they name the fields.
        name: the class name (``signature_name=`` as in DSPy works too).
        custom_types: names of types the string form uses. Without it, a name that is not
            built in (``int``, ``list``, ``Optional``...) is looked up where the signature is
            made, as DSPy does: ``Signature("when: datetime -> day: date")`` finds the
            caller's imported ``datetime`` and ``date``.

    Example:
        >>> import dspex
        >>> from datetime import date
        >>> dspex.make_signature("text -> when: date").output_fields["when"].annotation
        <class 'datetime.date'>
    """
    name = name or signature_name
    if isinstance(spec, str):
        lookup = None if custom_types else caller_names()
        fields = _string_fields(spec, custom_types, lookup)
        where = f"Signature {spec!r}"
    else:
        fields = {n: _mapping_field(n, v, name) for n, v in spec.items()}
        where = name
    _validate(where, fields)
    ordered = _ordered(fields)
    text = instructions or _default_instructions(
        [n for n, f in ordered.items() if f.kind == "input"],
        [n for n, f in ordered.items() if f.kind == "output"],
    )
    return _build(name, ordered, text)


def _string_fields(
    spec: str, custom_types: Mapping[str, Any] | None, lookup: Any
) -> dict[str, Field]:
    inputs, outputs = parse_signature_string(spec, custom_types, lookup)
    pairs = [(n, t, "input") for n, t in inputs] + [(n, t, "output") for n, t in outputs]
    fields: dict[str, Field] = {}
    for fname, ftype, kind in pairs:
        if fname in fields:
            raise SignatureError(
                f"Signature {spec!r} declares field {fname!r} twice; input and output fields "
                "must have distinct names."
            )
        _check_name(fname, f"Signature {spec!r}")
        check_type(ftype, f"Signature {spec!r}, field {fname!r}")
        fields[fname] = Field(fname, ftype, kind)  # type: ignore[arg-type]
    return fields


def _mapping_field(fname: str, value: Any, where: str) -> Field:
    if not isinstance(fname, str):
        raise SignatureError(f"{where}: field names must be strings, got {fname!r}.")
    _check_name(fname, where)
    ftype: Any = None
    if isinstance(value, tuple) and len(value) == 2:
        ftype, value = value
    if isinstance(value, Field):
        field = value.with_(name=fname, annotation=ftype or value.annotation)
    elif isinstance(value, _FieldMarker):
        field = _resolve(fname, ftype or value.annotation or str, value)
    else:
        raise SignatureError(
            f"{where}: field {fname!r} must be (type, dspex.InputField()/OutputField()) or a "
            f"field, got {value!r}."
        )
    check_type(field.annotation, f"{where}, field {fname!r}")
    return field


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
