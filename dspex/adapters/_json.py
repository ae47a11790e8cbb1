"""``JSONAdapter``: asks for one JSON object through the provider's JSON mode."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dspex.adapters._base import FieldParseFailure, type_hint, validate_outputs
from dspex.adapters._chat import ChatAdapter

if TYPE_CHECKING:
    from dspex.signatures import Signature

__all__ = ["JSONAdapter"]


def _first_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (models sometimes wrap it in prose or fences)."""
    start = text.find("{")
    if start < 0:
        raise FieldParseFailure(None, "the answer contains no JSON object")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise FieldParseFailure(
            None, f"the answer is not valid JSON ({e.msg} at char {e.pos})"
        ) from None
    return value


class JSONAdapter(ChatAdapter):
    """Same system prompt as ``ChatAdapter``; the answer is a JSON object in JSON mode.

    Example:
        >>> import dspex
        >>> dspex.JSONAdapter().parse(dspex.Signature("q -> a: int"), '{"a": 3}')
        {'a': 3}
    """

    name = "JSONAdapter"

    def lm_kwargs(self, signature: type[Signature]) -> dict[str, Any]:
        return {"response_format": {"type": "json_object"}}

    def assistant_message(self, signature: type[Signature], outputs: Mapping[str, Any]) -> str:
        values = {n: outputs[n] for n in signature.output_fields if n in outputs}
        return json.dumps(values, ensure_ascii=False, default=str)

    def _instruction_tail(self, signature: type[Signature]) -> str:
        keys = []
        for name, f in signature.output_fields.items():
            hint = type_hint(f)
            keys.append(f"`{name}`" + (f" ({hint})" if hint else ""))
        return (
            "Respond with a JSON object in the following order of fields: "
            + ", then ".join(keys)
            + "."
        )

    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        value = _first_json_object(text)
        if not isinstance(value, dict):
            raise FieldParseFailure(None, "the answer is JSON but not an object")
        return validate_outputs(signature, value)
