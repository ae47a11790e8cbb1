"""The one rule for turning values inside examples and predictions into JSON.

Pydantic models become their JSON dump, enums their value, Examples/Predictions their fields.
Anything else is a ``TypeError`` (the encoder's signal), unless the caller asks for ``str``
as a last resort (traces and reports, which must never fail to write a row).
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["json_default", "json_default_or_str"]


def json_default(value: Any) -> Any:
    """A ``default=`` for ``json.dumps``/``orjson.dumps``."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
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
