"""``JSONAdapter``: asks for one JSON object, through the provider's JSON mode.

The prompt is DSPy's JSONAdapter prompt, byte for byte: the inputs keep their
``[[ ## name ## ]]`` sections, the system message shows the outputs as a JSON object, and
demos answer with indented JSON.
"""

from __future__ import annotations

import json
import logging
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pydantic

from dspex.adapters._base import Adapter, FieldParseFailure
from dspex.adapters._chat import ChatAdapter, _parse_field, _type_info, finish_parse
from dspex.adapters._format import format_field_value, serialize_for_json
from dspex.adapters._parse import NOT_PARSED, loads_lenient
from dspex.adapters._types import ToolCalls

if TYPE_CHECKING:
    from dspex.signatures import Field, Signature

__all__ = ["JSONAdapter", "structured_response_format"]

_log = logging.getLogger("dspex.adapters")
_JSON_MODE = {"type": "json_object"}


class JSONAdapter(ChatAdapter):
    """DSPy's ``JSONAdapter``: the answer is one JSON object, requested in JSON mode.

    Args:
        callbacks: callbacks told of this adapter's format and parse steps.
        structured_outputs: ``None`` (default) sends the output fields' JSON schema as
            ``response_format`` when the LM says it supports one (its
            ``supports_response_schema`` is true), else JSON mode; ``True`` always sends
            the schema, ``False`` always JSON mode. Fields typed as an open mapping
            (``dict[str, ...]``) have no strict schema, so they always get JSON mode.
        use_native_function_calling: as ``ChatAdapter``'s, but on by default (as in DSPy):
            a ``list[Tool]`` input and a ``ToolCalls`` output use the provider's tool calls.
        parallel_tool_calls: sent as ``parallel_tool_calls`` with native tools when set.

    A ``JSONAdapter`` does not re-ask after a parse failure (as in DSPy): it raises
    ``AdapterParseError``.

    Example:
        >>> import dspex
        >>> dspex.JSONAdapter().parse(dspex.Signature("q -> a: int"), 'Sure: {"a": 3}')
        {'a': 3}
    """

    name = "JSONAdapter"

    def __init__(
        self,
        callbacks: Sequence[Any] | None = None,
        structured_outputs: bool | None = None,
        *,
        use_native_function_calling: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks=callbacks,
            use_json_adapter_fallback=False,
            use_native_function_calling=use_native_function_calling,
            parallel_tool_calls=parallel_tool_calls,
        )
        self.structured_outputs = structured_outputs

    def fallback(self) -> Adapter | None:
        return None

    def lm_kwargs(self, signature: type[Signature], lm: Any = None) -> dict[str, Any]:
        supported = getattr(lm, "supported_params", None)
        if supported is not None and "response_format" not in supported:
            return {}
        wanted = self.structured_outputs
        if wanted is None:
            wanted = getattr(lm, "supports_response_schema", False) is True
        # Tool calls carry open argument objects, which a strict schema cannot describe.
        if not wanted or _has_open_mapping(signature) or _has_tool_calls(signature):
            return {"response_format": dict(_JSON_MODE)}
        try:
            return {"response_format": structured_response_format(signature)}
        except (ValueError, TypeError, pydantic.PydanticUserError) as e:
            _log.warning("No structured-output schema for %s (%s): JSON mode.", signature, e)
            return {"response_format": dict(_JSON_MODE)}

    # -- formatting ----------------------------------------------------------------------
    def format_field_structure(self, signature: type[Signature]) -> str:
        parts = [
            "All interactions will be structured in the following way, with the appropriate "
            "values filled in.",
            "Inputs will have the following structure:",
            self.format_field_with_value(self._fields_for_instructions(signature.input_fields)),
            "Outputs will be a JSON object with the following fields.",
            self.format_field_with_value(
                self._fields_for_instructions(signature.output_fields), role="assistant"
            ),
        ]
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: type[Signature]) -> str | None:
        order = ", then ".join(f"`{n}`{_type_info(f)}" for n, f in signature.output_fields.items())
        return f"Respond with a JSON object in the following order of fields: {order}."

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        values = [
            (f, outputs.get(n, missing_field_message)) for n, f in signature.output_fields.items()
        ]
        return self.format_field_with_value(values, role="assistant")

    def format_field_with_value(
        self, fields_with_values: Sequence[tuple[Field, Any]], role: str = "user"
    ) -> str:
        """Input sections as ``[[ ## name ## ]]``; output values as one indented JSON object."""
        if role == "user":
            return "\n\n".join(
                f"[[ ## {f.name} ## ]]\n{format_field_value(f, value)}"
                for f, value in fields_with_values
            ).strip()
        values = {f.name: value for f, value in fields_with_values}
        return json.dumps(serialize_for_json(values), indent=2, ensure_ascii=False)

    def format_finetune_data(self, *args: Any, **kwargs: Any) -> dict[str, list[Any]]:
        raise NotImplementedError("JSONAdapter has no finetuning format (nor has DSPy's).")

    # -- parsing -------------------------------------------------------------------------
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The output fields of a JSON object answer; text around the object is ignored."""
        value = loads_lenient(completion)
        if not isinstance(value, dict):
            raise FieldParseFailure(
                self.name,
                signature,
                completion,
                "LM response cannot be serialized to a JSON object."
                if value == NOT_PARSED
                else "the answer is JSON but not an object",
            )
        outputs = signature.output_fields
        fields: dict[str, Any] = {}
        for name, raw in value.items():
            if name in outputs:
                fields[name] = _parse_field(self.name, signature, completion, name, raw, fields)
        return finish_parse(self.name, signature, completion, fields)


def _has_open_mapping(signature: type[Signature]) -> bool:
    return any(typing.get_origin(f.annotation) is dict for f in signature.output_fields.values())


def _has_tool_calls(signature: type[Signature]) -> bool:
    return any(f.annotation is ToolCalls for f in signature.output_fields.values())


def structured_response_format(signature: type[Signature]) -> dict[str, Any]:
    """The ``response_format`` for OpenAI structured outputs: DSPy's strict schema.

    Every object lists all its properties as required and forbids others.
    """
    fields: dict[str, Any] = {}
    for name, f in signature.output_fields.items():
        if typing.get_origin(f.annotation) is dict:
            raise ValueError(f"field {name!r} is an open mapping")
        default = getattr(f, "default", ...)
        fields[name] = (f.annotation, ... if _undefined(default) else default)
    model = pydantic.create_model(
        "DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    schema: dict[str, Any] = model.model_json_schema()
    for prop in schema.get("properties", {}).values():
        prop.pop("json_schema_extra", None)
    _enforce_required(schema)
    return {
        "type": "json_schema",
        "json_schema": {"schema": schema, "name": "DSPyProgramOutputs", "strict": True},
    }


def _undefined(default: Any) -> bool:
    from pydantic_core import PydanticUndefined

    return default is ... or default is PydanticUndefined


def _enforce_required(part: dict[str, Any]) -> None:
    if part.get("type") == "object":
        props = part.get("properties")
        if props is not None:
            part["required"] = list(props)
            part["additionalProperties"] = False
            for sub in props.values():
                if isinstance(sub, dict):
                    _enforce_required(sub)
        else:
            part.update(properties={}, required=[], additionalProperties=False)
    if part.get("type") == "array" and isinstance(part.get("items"), dict):
        _enforce_required(part["items"])
    for key in ("$defs", "definitions"):
        for sub in part.get(key, {}).values():
            _enforce_required(sub)
