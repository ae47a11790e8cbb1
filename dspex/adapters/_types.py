"""Types a signature can declare that adapters render specially: ``History``, ``ToolCalls``.

A type whose :meth:`_Type.format` is a list of content parts (``Image``) serializes to those
parts between two markers, as DSPy's ``dspy.Type`` does; :func:`expand_content_parts` turns a
user message holding markers into a list of content parts (text before, the parts, text after).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import pydantic

from dspex.errors import UserError

__all__ = [
    "CUSTOM_TYPE_END",
    "CUSTOM_TYPE_START",
    "History",
    "ToolCall",
    "ToolCalls",
    "custom_types",
    "expand_content_parts",
]

# DSPy's reserved markers around a custom type's content parts in formatted text.
CUSTOM_TYPE_START = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
CUSTOM_TYPE_END = "<<CUSTOM-TYPE-END-IDENTIFIER>>"
_MARKED = re.compile(rf"{CUSTOM_TYPE_START}(.*?){CUSTOM_TYPE_END}", re.DOTALL)


class History(pydantic.BaseModel):
    """The conversation so far, for a signature input of this type (DSPy's ``dspy.History``).

    Each message is a dict keyed by the signature's field names. The adapter renders every
    message as a user turn (its input fields) and an assistant turn (its output fields), between
    the demos and the current inputs, and leaves the history field out of the last message.

    Example:
        >>> import dspex
        >>> class Chat(dspex.Signature):
        ...     question: str = dspex.InputField()
        ...     history: dspex.History = dspex.InputField()
        ...     answer: str = dspex.OutputField()
        >>> history = dspex.History(messages=[{"question": "2+2?", "answer": "4"}])
        >>> inputs = {"question": "And 3+3?", "history": history}
        >>> msgs = dspex.ChatAdapter().format(Chat, [], inputs)
        >>> [m["role"] for m in msgs]
        ['system', 'user', 'assistant', 'user']
    """

    messages: list[dict[str, Any]]

    model_config = pydantic.ConfigDict(
        frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )


class _Type(pydantic.BaseModel):
    """A value type adapters know how to write (DSPy's ``dspy.Type``): :meth:`format` is its
    prompt form (text, a JSON value, or a list of message content parts), :meth:`description`
    a note the field list shows for it."""

    def format(self) -> Any:
        raise NotImplementedError

    @classmethod
    def description(cls) -> str:
        return ""

    @pydantic.model_serializer()
    def _serialize(self) -> Any:
        formatted = self.format()
        if isinstance(formatted, list):  # content parts: marked, for the adapter to split out
            parts = json.dumps(formatted, ensure_ascii=False)
            return f"{CUSTOM_TYPE_START}{parts}{CUSTOM_TYPE_END}"
        return formatted


def expand_content_parts(message: dict[str, Any]) -> dict[str, Any]:
    """A user message whose text holds marked content parts, with its content split into a
    list of parts around them (DSPy's split, byte for byte); any other message unchanged."""
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, str):
        return message
    if CUSTOM_TYPE_START not in content:
        return message
    parts: list[dict[str, Any]] = []
    last = 0
    for match in _MARKED.finditer(content):
        start, end = match.span()
        if start > last:
            parts.append({"type": "text", "text": content[last:start]})
        parts.extend(_payload_parts(match.group(1).strip()))
        last = end
    if last < len(content):
        parts.append({"type": "text", "text": content[last:]})
    return {**message, "content": parts}


def _payload_parts(payload: str) -> list[dict[str, Any]]:
    parsed = _read_payload(payload)
    if isinstance(parsed, list):
        return [p if isinstance(p, dict) else {"type": "text", "text": str(p)} for p in parsed]
    return [{"type": "text", "text": payload}]


def _read_payload(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        pass
    try:  # JSON-encoded twice: a marked value inside a list or dict (``list[Image]``)
        return json.loads(json.loads(f'"{payload}"'))
    except ValueError:
        pass
    from dspex.adapters._parse import loads_lenient

    return loads_lenient(payload)


def custom_types(annotation: Any) -> list[type[_Type]]:
    """The adapter-aware types in ``annotation``, however nested (``list[ToolCalls]``)."""
    if isinstance(annotation, type) and issubclass(annotation, _Type):
        return [annotation]
    found: list[type[_Type]] = []
    if typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found.extend(custom_types(arg))
    return found


class ToolCall(_Type):
    """One call an LM asks for: the tool's ``name`` and its ``args``; ``id`` is the
    provider's call id, when the call came from native function calling."""

    id: str | None = None
    name: str
    args: dict[str, Any] = pydantic.Field(json_schema_extra={"additionalProperties": True})

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # The id is the provider's, never the model's to write: prompts do not show it (nor
        # this docstring: the schema is DSPy's, byte for byte).
        schema = handler.resolve_ref_schema(
            super().__get_pydantic_json_schema__(core_schema, handler)
        )
        schema.pop("description", None)
        schema.get("properties", {}).pop("id", None)
        if isinstance(schema.get("required"), list):
            schema["required"] = [f for f in schema["required"] if f != "id"]
        return cast(dict[str, Any], schema)

    def format(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.args}

    def execute(self, functions: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        """Run this call: ``functions`` maps names to functions or ``Tool``s, or lists
        ``Tool``s; ``None`` looks the name up in the caller's locals, then globals (DSPy's
        behaviour). A ``Tool`` validates the arguments and is observed as a tool call.

        Raises:
            UserError: no function of this name was given.
            RuntimeError: the function raised (the error is its ``__cause__``).
        """
        func: Any = None
        if functions is None:
            frame = inspect.currentframe()
            caller = frame.f_back if frame is not None else None
            try:
                if caller is not None:
                    func = caller.f_locals.get(self.name) or caller.f_globals.get(self.name)
            finally:
                del frame, caller
        elif isinstance(functions, Mapping):
            func = functions.get(self.name)
        else:
            func = next((t for t in functions if getattr(t, "name", None) == self.name), None)
        if func is None:
            raise UserError(
                f"Tool function {self.name!r} not found. Please pass the tool functions to the "
                "`execute` method."
            )
        from dspex.primitives._tool import Tool

        tool = func if isinstance(func, Tool) else Tool(func, name=self.name)
        try:
            return tool(**self.args)
        except Exception as e:
            raise RuntimeError(f"Error executing tool {self.name!r}: {e}") from e


_ToolCall = ToolCall  # the name ToolCalls' body can use (its own ToolCall is DSPy's alias)


class ToolCalls(_Type):
    """An output type for the tool calls an LM asks for (DSPy's ``dspy.ToolCalls``).

    Parsed from ``{"tool_calls": [{"name": ..., "args": {...}}]}``, a list of calls, one call,
    or OpenAI-shaped calls (``{"function": {"name": ..., "arguments": "<json>"}}``).

    Example:
        >>> import dspex
        >>> calls = dspex.ToolCalls.from_dict_list([{"name": "search", "args": {"q": "cats"}}])
        >>> calls.tool_calls[0].name
        'search'
        >>> calls.model_dump()
        {'tool_calls': [{'name': 'search', 'args': {'q': 'cats'}}]}
    """

    ToolCall: ClassVar[type[_ToolCall]] = _ToolCall  # DSPy's spelling: ToolCalls.ToolCall

    tool_calls: list[_ToolCall]
    tool_call_results: Any | None = None

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler.resolve_ref_schema(
            super().__get_pydantic_json_schema__(core_schema, handler)
        )
        schema.pop("description", None)  # DSPy's schema, which has none
        schema.get("properties", {}).pop("tool_call_results", None)
        if isinstance(schema.get("required"), list):
            schema["required"] = [f for f in schema["required"] if f != "tool_call_results"]
        return cast(dict[str, Any], schema)

    @classmethod
    def from_dict_list(cls, tool_calls_dicts: Sequence[Mapping[str, Any]]) -> ToolCalls:
        """``ToolCalls`` from dicts with ``name`` and ``args`` (or provider-shaped calls)."""
        return cls(tool_calls=[_ToolCall(**_normalize_call(d)) for d in tool_calls_dicts])

    @classmethod
    def description(cls) -> str:
        return (
            "Tool calls must be a JSON object with `tool_calls`, a list of calls. "
            "Each call must include `name` and `args`. "
            'Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}'
        )

    def format(self) -> dict[str, Any]:
        return {"tool_calls": [call.format() for call in self.tool_calls]}

    @pydantic.model_serializer()
    def _serialize(self) -> Any:
        data = self.format()
        if self.tool_call_results is not None:
            data["tool_call_results"] = pydantic.TypeAdapter(
                type(self.tool_call_results)
            ).dump_python(self.tool_call_results, mode="json")
        return data

    @pydantic.model_validator(mode="before")
    @classmethod
    def _accept_shapes(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, list) and all(isinstance(d, dict) and _is_call(d) for d in data):
            return {"tool_calls": [_ToolCall(**_normalize_call(d)) for d in data]}
        if isinstance(data, dict):
            if "tool_calls" in data:
                calls = data["tool_calls"]
                if isinstance(calls, list):
                    out: dict[str, Any] = {
                        "tool_calls": [
                            _ToolCall(**_normalize_call(d)) if isinstance(d, dict) else d
                            for d in calls
                        ]
                    }
                    if "tool_call_results" in data:
                        out["tool_call_results"] = data["tool_call_results"]
                    return out
            elif _is_call(data):
                return {"tool_calls": [_ToolCall(**_normalize_call(data))]}
        raise ValueError(f"Received invalid value for `dspex.ToolCalls`: {data}")


def _is_call(data: Mapping[str, Any]) -> bool:
    return ("name" in data and ("args" in data or "arguments" in data)) or "function" in data


def _normalize_call(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"Received invalid tool call value for `dspex.ToolCalls`: {data}")
    if "function" in data:
        function = data.get("function") or {}
        if not isinstance(function, Mapping):
            raise ValueError(f"Received invalid function value for `dspex.ToolCalls`: {function}")
        arguments = function.get("arguments", {})
        name = function.get("name") or data.get("name")
    else:
        arguments = data.get("args", data.get("arguments", {}))
        name = data.get("name")
    if isinstance(arguments, str):
        from dspex.adapters._parse import loads_lenient

        arguments = loads_lenient(arguments)
    if not isinstance(arguments, dict):
        arguments = {}
    return {"id": data.get("id") or data.get("call_id"), "name": name, "args": arguments}
