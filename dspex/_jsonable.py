"""The one JSON rule: how dspex turns values into JSON, and the canonical form it hashes.

Pydantic models become their JSON dump (a model *class*, e.g. a ``response_format``, its
JSON schema), enums their value, sets a sorted list, Examples/Predictions their fields.
Anything else is a ``TypeError`` (the encoder's signal), unless the caller asks for ``str``
as a last resort (hashes, traces and reports, which must never fail to write a row).

:func:`canonical_json` is the one form every hash is computed from (LM cache keys, program
and dataset fingerprints, registry keys, promotion keys): compact UTF-8, keys sorted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["canonical_json", "dumps", "json_default", "json_default_or_str", "loads"]

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

loads: Callable[[str | bytes], Any] = orjson.loads


def json_default(value: Any) -> Any:
    """A ``default=`` for ``json.dumps``/``orjson.dumps``."""
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)
        if callable(schema):
            return schema()
    elif hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)  # a set's own order changes from process to process
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")


def json_default_or_str(value: Any) -> Any:
    """:func:`json_default`, falling back to ``str(value)``."""
    try:
        return json_default(value)
    except TypeError:
        return str(value)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, key order kept (``str`` for what has no JSON form)."""
    return orjson.dumps(value, default=json_default_or_str, option=orjson.OPT_NON_STR_KEYS)


def canonical_json(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes with sorted keys: the one form dspex hashes.

    Example:
        >>> canonical_json({"b": 1, "a": [1, 2]})
        b'{"a":[1,2],"b":1}'
    """
    return orjson.dumps(value, default=json_default_or_str, option=_CANONICAL)
