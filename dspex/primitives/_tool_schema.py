"""What a tool takes: JSON schemas from a function's signature and type hints, as DSPy 3.4's
``Tool`` builds them (they are written into prompts, so they must match DSPy's byte for byte),
and the pydantic validation of the arguments an LM proposes.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pydantic
import pydantic_core

from dspex.errors import DataError, UserError

__all__ = ["ArgSpec", "FunctionInfo", "inspect_function", "schema_to_args"]

# JSON schema "type" -> the Python type a value is validated as (tools built from a schema).
_TYPE_MAPPING: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """What a function's signature says about calling it."""

    name: str
    desc: str | None
    args: dict[str, Any]  # arg name -> JSON schema
    arg_types: dict[str, Any]  # arg name -> Python type (``Any`` when unannotated)
    required: frozenset[str]
    has_kwargs: bool


def _annotated_callable(func: Callable[..., Any]) -> Callable[..., Any]:
    """The callable whose signature and hints describe ``func`` (an object's ``__call__``)."""
    if inspect.isfunction(func) or inspect.ismethod(func) or isinstance(func, functools.partial):
        return func
    call = getattr(func, "__call__", None)  # noqa: B004 - the bound method is what we inspect
    return call if call is not None else func


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    target = func.func if isinstance(func, functools.partial) else func
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: the arguments are untyped
        return {}


def inspect_function(func: Callable[..., Any], arg_desc: Mapping[str, str] | None) -> FunctionInfo:
    """Name, description and argument schemas of ``func``, as DSPy infers them: the name is
    ``__name__``, the description the raw docstring, each argument's schema pydantic's with
    ``$ref``s resolved, its default as ``"default"`` and ``arg_desc``'s text as
    ``"description"``."""
    annotated = _annotated_callable(func)
    name = getattr(func, "__name__", type(func).__name__)
    desc = getattr(func, "__doc__", None) or getattr(annotated, "__doc__", "")
    try:
        sig = inspect.signature(annotated)
    except (TypeError, ValueError) as e:
        raise UserError(f"Tool({func!r}): its signature cannot be read ({e}).") from None
    hints = _hints(annotated)
    args: dict[str, Any] = {}
    arg_types: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        tp = hints.get(pname, Any)
        arg_types[pname] = tp
        args[pname] = _arg_schema(name, pname, tp)
        if param.default is not inspect.Parameter.empty:
            args[pname]["default"] = _to_json_default(param.default)
        if arg_desc and pname in arg_desc:
            args[pname]["description"] = arg_desc[pname]
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    required = frozenset(
        p.name
        for p in sig.parameters.values()
        if p.kind in plain and p.default is inspect.Parameter.empty
    )
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return FunctionInfo(name, desc, args, arg_types, required, has_kwargs)


def _arg_schema(tool: str, arg: str, tp: Any) -> dict[str, Any]:
    try:
        schema = pydantic.TypeAdapter(tp).json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as e:
        raise UserError(
            f"Tool {tool!r}: argument {arg!r} has type {tp!r}, which has no JSON schema ({e}). "
            "Annotate it with a JSON-friendly type (str, int, list[...], a pydantic model...), "
            "or pass Tool(..., args={...}, arg_types={...})."
        ) from None
    return resolve_refs(schema)


def _to_json_default(value: Any) -> Any:
    """A parameter default in its JSON form (an Enum member as its value, a Decimal as a
    number, since a JSON number fits both float and Decimal arguments)."""
    if isinstance(value, Decimal):
        return float(value)
    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception:
        return value


def resolve_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every ``$ref`` replaced by its definition and ``$defs`` dropped. A
    recursive definition keeps its ``$ref`` (and the ``$defs`` it needs)."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return schema
    cyclic = False

    def walk(obj: Any, stack: tuple[str, ...]) -> Any:
        nonlocal cyclic
        if isinstance(obj, list):
            return [walk(item, stack) for item in obj]
        if not isinstance(obj, dict):
            return obj
        ref = obj.get("$ref")
        if isinstance(ref, str):
            key = ref.split("/")[-1]
            if key in stack or key not in defs:
                cyclic = True
                return obj
            return walk(defs[key], (*stack, key))
        return {k: walk(v, stack) for k, v in obj.items()}

    resolved: dict[str, Any] = walk(schema, ())
    if not cyclic:
        resolved.pop("$defs", None)
    return resolved


def schema_to_args(
    schema: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """``(args, arg_types, arg_desc)`` from a JSON schema of an object (an MCP tool's input
    schema, a LangChain tool's ``args_schema``), as DSPy converts them."""
    args: dict[str, Any] = {}
    arg_types: dict[str, Any] = {}
    arg_desc: dict[str, str] = {}
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return args, arg_types, arg_desc
    required = schema.get("required") or []
    defs = schema.get("$defs") or {}
    for name, prop in properties.items():
        if defs:
            prop = resolve_refs({"$defs": defs, **prop})
        args[name] = prop
        arg_types[name] = _TYPE_MAPPING.get(prop.get("type"), Any)
        arg_desc[name] = prop.get("description", "No description provided.")
        if name in required:
            arg_desc[name] += " (Required)"
    return args, arg_types, arg_desc


@functools.lru_cache(maxsize=1024)
def _adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(tp)


def _type_adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return _adapter(tp)
    except TypeError:  # an unhashable annotation
        return pydantic.TypeAdapter(tp)


class ArgSpec:
    """Validates the arguments of one call before the tool runs: no unknown argument (unless
    the function takes ``**kwargs``), every required one present, each value valid for its
    type (pydantic, lax: ``"3"`` is a valid ``int``)."""

    def __init__(
        self,
        tool: str,
        args: Mapping[str, Any],
        arg_types: Mapping[str, Any],
        required: frozenset[str],
        has_kwargs: bool,
    ) -> None:
        self.tool = tool
        self.args = dict(args)
        self.required = required
        self.has_kwargs = has_kwargs
        self.types: dict[str, Any] = {}
        for name in self.args:
            tp = arg_types.get(name)
            if tp is None:
                tp = _TYPE_MAPPING.get(str(self.args[name].get("type")), Any)
            if tp is not Any:
                self.types[name] = tp

    def validate(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments parsed to their types.

        Raises:
            DataError: (a ``ValueError``) an argument is unknown, missing or invalid.
        """
        problems: list[str] = []
        unknown = [k for k in kwargs if k not in self.args and not self.has_kwargs]
        if unknown:
            problems.append(f"unknown argument(s) {unknown}; it takes {list(self.args)}")
        missing = sorted(k for k in self.required if k not in kwargs and k in self.args)
        if missing:
            problems.append(f"missing required argument(s) {missing}")
        parsed: dict[str, Any] = {}
        for name, value in kwargs.items():
            tp = self.types.get(name)
            if tp is None:
                parsed[name] = value
                continue
            try:
                parsed[name] = _type_adapter(tp).validate_python(value)
            except pydantic.ValidationError as e:
                problems.append(f"argument {name!r}: {_reason(e)}")
        if problems:
            raise DataError(f"Tool {self.tool!r} got invalid arguments: {'; '.join(problems)}.")
        return parsed


def _reason(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
    return ", ".join(parts)
