"""Fast, canonical JSON for the LM hot path: orjson when installed, else the stdlib.

Both encoders produce compact UTF-8 with sorted keys, so a cache key computed with one
matches the other for ordinary request values (strings, ints, simple floats, lists, dicts).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "dumps_canonical", "loads"]

loads: Callable[[str | bytes], Any]


def _default(value: Any) -> Any:
    # Pydantic model classes travel as ``response_format``; their schema is what matters.
    schema = getattr(value, "model_json_schema", None)
    if callable(schema):
        return schema()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


try:
    import orjson
except ImportError:  # pragma: no cover - orjson ships with prefect, but stay optional
    orjson = None  # type: ignore[assignment]

if orjson is not None:
    _SORT = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

    def dumps(value: Any) -> bytes:
        """Compact JSON bytes (key order kept)."""
        return orjson.dumps(value, default=_default)

    def dumps_canonical(value: Any) -> bytes:
        """Compact JSON bytes with sorted keys: the form cache keys are hashed from."""
        return orjson.dumps(value, default=_default, option=_SORT)

    loads = orjson.loads
else:  # pragma: no cover
    _compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_default)
    _sorted = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=_default
    )

    def dumps(value: Any) -> bytes:
        """Compact JSON bytes (key order kept)."""
        return _compact.encode(value).encode()

    def dumps_canonical(value: Any) -> bytes:
        """Compact JSON bytes with sorted keys: the form cache keys are hashed from."""
        return _sorted.encode(value).encode()

    loads = json.loads
