"""References to live objects, so that Prefect task inputs stay values.

A flow parameter or task input never holds a live program, metric, dataset or LM client;
it holds a *reference*: ``"package.module:attr"`` (importable anywhere: what deployments and
the Prefect UI use), or ``"registry:<content hash>"`` for an object handed to
``optimizer.compile(...)`` in this process. Registry keys are derived from content (a
program's state, a dataset's rows, an LM's configuration, a metric's code), so the same
script run again produces the same keys — and the same Prefect cache keys, which is what lets
a killed run resume.

``compile()`` registers its objects inside :func:`registration_scope`, which releases them
when the run ends (objects shared by concurrent runs stay until the last one ends), so a
notebook that compiles many times keeps no old programs, datasets or LMs alive.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
import types
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from dspex.errors import UserError
from dspex.optimize._demos import dataset_fingerprint, program_fingerprint, stable_json
from dspex.optimize._metric import stop_on_programming_errors
from dspex.primitives import Example, Module

__all__ = [
    "register_object",
    "registration_scope",
    "resolve",
    "resolve_examples",
    "resolve_metric",
    "resolve_program",
]

_lock = threading.Lock()
_objects: dict[str, Any] = {}
# How many open scopes hold each key; a key registered outside any scope is kept for good.
_holders: Counter[str] = Counter()
_scope: ContextVar[list[str] | None] = ContextVar("dspex_registration_scope", default=None)


def _key_for(obj: Any) -> str:
    if isinstance(obj, Module):
        return f"program-{type(obj).__qualname__}-{program_fingerprint(obj)}"
    if isinstance(obj, list | tuple) and all(isinstance(x, Example) for x in obj):
        return f"dataset-{dataset_fingerprint(obj)}"
    if hasattr(obj, "dump_config") and hasattr(obj, "model"):
        return "lm-" + hashlib.sha256(stable_json(obj.dump_config()).encode()).hexdigest()[:16]
    if callable(obj):
        code = getattr(obj, "__code__", None)
        body = _code_bytes(code) if code is not None else b""
        name = (
            f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
        )
        return "fn-" + hashlib.sha256(name.encode() + body).hexdigest()[:16]
    raise UserError(f"Cannot reference an object of type {type(obj).__name__}.")


def _code_bytes(code: types.CodeType) -> bytes:
    """A function's bytecode and constants, nested code included, without memory addresses
    (``repr`` of a nested code object has one, which would change the key every run)."""
    parts = [code.co_code]
    for const in code.co_consts:
        parts.append(
            _code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode()
        )
    return b"\x00".join(parts)


def register_object(obj: Any) -> str:
    """Keep ``obj`` and return its ``registry:`` reference: until the enclosing
    :func:`registration_scope` ends, or for the life of the process outside one."""
    key = _key_for(obj)
    scope = _scope.get()
    with _lock:
        _objects[key] = obj
        if scope is not None:
            _holders[key] += 1
            scope.append(key)
    return f"registry:{key}"


@contextmanager
def registration_scope() -> Iterator[None]:
    """Release what :func:`register_object` kept inside this block when it ends.

    Example:
        >>> from dspex.optimize._refs import register_object, registration_scope, resolve
        >>> with registration_scope():
        ...     ref = register_object([])
        ...     resolve(ref)
        []
    """
    keys: list[str] = []
    token = _scope.set(keys)
    try:
        yield
    finally:
        _scope.reset(token)
        with _lock:
            for key in keys:
                _holders[key] -= 1
                if _holders[key] <= 0:
                    del _holders[key]
                    _objects.pop(key, None)


def resolve(ref: str) -> Any:
    """The object a reference names."""
    if ref.startswith("registry:"):
        with _lock:
            obj = _objects.get(ref.removeprefix("registry:"))
        if obj is None:
            raise UserError(
                f"{ref} is not registered in this process. In-process references only work "
                "in the process that called compile(); for deployments and workers, name "
                "objects by import path ('package.module:attr')."
            )
        return obj
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"Reference {ref!r} must look like 'package.module:attr'.")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"Cannot import {module_name!r} for reference {ref!r}: {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"{module_name!r} has no attribute {attr!r} ({ref!r}).") from None
    return obj


_SHORTHANDS = {"predict:": "Predict", "cot:": "ChainOfThought"}


def resolve_program(ref: str) -> Module:
    """A fresh copy of the program a reference names (a Module, class or factory).

    ``predict:<signature>`` and ``cot:<signature>`` build a ``Predict`` or ``ChainOfThought``
    from a string signature, e.g. ``cot:question -> answer: int``.
    """
    for prefix, cls_name in _SHORTHANDS.items():
        if ref.startswith(prefix):
            import dspex.modules

            module: Module = getattr(dspex.modules, cls_name)(ref.removeprefix(prefix).strip())
            return module
    obj = resolve(ref)
    if isinstance(obj, Module):
        return obj.deepcopy()
    if callable(obj):
        made = obj()
        if isinstance(made, Module):
            return made
    raise UserError(f"{ref!r} must name a dspex.Module, a Module class or a factory of one.")


def resolve_metric(ref: str) -> Callable[..., Any]:
    """The metric a flow's tasks call: a programming error it raises stops the run
    (:func:`~dspex.optimize._metric.stop_on_programming_errors`)."""
    metric = resolve(ref)
    if not callable(metric):
        raise UserError(f"Metric {ref!r} is not callable; it must be metric(example, pred, trace).")
    return stop_on_programming_errors(cast("Callable[..., Any]", metric))


def resolve_examples(ref: str) -> Sequence[Example]:
    data = resolve(ref)
    if callable(data) and not isinstance(data, list | tuple):
        data = data()
    if not isinstance(data, list | tuple) or not all(isinstance(x, Example) for x in data):
        raise UserError(f"{ref!r} must name a list of dspex.Example (or a function returning one).")
    return list(data)
