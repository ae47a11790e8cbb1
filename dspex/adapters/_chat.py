"""``ChatAdapter``: DSPy's field-marker format, byte for byte.

Each field is a section headed ``[[ ## name ## ]]``; an answer ends with
``[[ ## completed ## ]]``. The system message lists the fields and the instructions; each demo
is a user/assistant pair; the last user message holds the inputs and a format reminder.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pydantic

from dspex.adapters._base import (
    Adapter,
    FieldParseFailure,
    signature_memo,
    validation_reason,
)
from dspex.adapters._format import annotation_name, format_field_value, translate_field_type
from dspex.adapters._parse import output_defaults, parse_value
from dspex.adapters._types import ToolCalls

if TYPE_CHECKING:
    from dspex.signatures import Field, Signature

__all__ = ["ChatAdapter"]

_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_STRUCTURE_INTRO = (
    "All interactions will be structured in the following way, with the appropriate values "
    "filled in."
)


class ChatAdapter(Adapter):
    """Renders and parses DSPy's ``[[ ## field ## ]]`` format.

    Args:
        callbacks: callbacks told of this adapter's format and parse steps.
        use_json_adapter_fallback: when no completion parses, re-ask once with
            ``JSONAdapter`` (the default, as in DSPy); ``False`` raises at once.
        use_native_function_calling: when the signature has a ``list[Tool]`` input and a
            ``ToolCalls`` output, send the tools to the provider as OpenAI ``tools`` and fill
            the output from the response's ``tool_calls`` (both fields leave the prompt).
        parallel_tool_calls: sent as ``parallel_tool_calls`` with native tools when set.

    Example:
        >>> import dspex
        >>> sig = dspex.Signature("question -> answer")
        >>> msgs = dspex.ChatAdapter().format(sig, [], {"question": "2+2?"})
        >>> print(msgs[-1]["content"].splitlines()[0])
        [[ ## question ## ]]
    """

    name = "ChatAdapter"

    def __init__(
        self,
        callbacks: Sequence[Any] | None = None,
        use_json_adapter_fallback: bool = True,
        *,
        use_native_function_calling: bool = False,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            parallel_tool_calls=parallel_tool_calls,
        )
        self.use_json_adapter_fallback = use_json_adapter_fallback

    def fallback(self) -> Adapter | None:
        from dspex.adapters._json import JSONAdapter

        if not self.use_json_adapter_fallback or isinstance(self, JSONAdapter):
            return None
        return JSONAdapter(
            callbacks=self.callbacks,
            use_native_function_calling=self.use_native_function_calling,
            parallel_tool_calls=self.parallel_tool_calls,
        )

    # -- formatting ----------------------------------------------------------------------
    def _fields_for_instructions(self, fields: Mapping[str, Field]) -> list[tuple[Field, Any]]:
        return [(f, translate_field_type(f)) for f in fields.values()]

    def format_field_structure(self, signature: type[Signature]) -> str:
        parts = [
            _STRUCTURE_INTRO,
            self.format_field_with_value(self._fields_for_instructions(signature.input_fields)),
            self.format_field_with_value(self._fields_for_instructions(signature.output_fields)),
            "[[ ## completed ## ]]\n",
        ]
        return "\n\n".join(parts).strip()

    def format_task_description(self, signature: type[Signature]) -> str:
        instructions = textwrap.dedent(signature.instructions)
        objective = ("\n" + " " * 8).join(["", *instructions.splitlines()])
        return f"In adhering to this structure, your objective is: {objective}"

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        parts = [prefix]
        parts += [
            f"[[ ## {n} ## ]]\n{format_field_value(f, inputs.get(n))}"
            for n, f in signature.input_fields.items()
            if n in inputs
        ]
        if main_request:
            requirements = self.user_message_output_requirements(signature)
            if requirements is not None:
                parts.append(requirements)
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: type[Signature]) -> str | None:
        """The reminder after the inputs: which sections to write, in order."""
        memo = signature_memo(signature)  # the same text on every call of a signature
        text: str | None = memo.get("chat_output_requirements")
        if text is None:
            order = ", then ".join(
                f"`[[ ## {n} ## ]]`{_type_info(f)}" for n, f in signature.output_fields.items()
            )
            text = (
                f"Respond with the corresponding output fields, starting with the field {order}, "
                "and then ending with the marker for `[[ ## completed ## ]]`."
            )
            memo["chat_output_requirements"] = text
        return text

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        content = self.format_field_with_value(
            [(f, outputs.get(n, missing_field_message)) for n, f in signature.output_fields.items()]
        )
        return content + "\n\n[[ ## completed ## ]]\n"

    def format_finetune_data(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
    ) -> dict[str, list[Any]]:
        """An OpenAI chat finetuning row: the prompt's messages plus the answer's."""
        messages = self.format(signature, demos, inputs)
        answer = self.format_assistant_message_content(signature, outputs)
        return {"messages": [*messages, {"role": "assistant", "content": answer}]}

    # -- parsing -------------------------------------------------------------------------
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The output fields of a ``[[ ## name ## ]]`` answer; the first section of a name wins.

        Example:
            >>> import dspex
            >>> sig = dspex.Signature("question -> answer: int")
            >>> dspex.ChatAdapter().parse(sig, "[[ ## answer ## ]]\\n4\\n\\n[[ ## completed ## ]]")
            {'answer': 4}
        """
        sections: list[tuple[str | None, list[str]]] = [(None, [])]
        for line in completion.splitlines():
            stripped = line.strip()
            match = _HEADER.match(stripped)
            if match:
                rest = stripped[match.end() :].strip()
                sections.append((match.group(1), [rest] if rest else []))
            else:
                sections[-1][1].append(line)
        outputs = signature.output_fields
        fields: dict[str, Any] = {}
        for name, lines in sections:
            if name is None or name in fields or name not in outputs:
                continue
            text = "\n".join(lines).strip()
            fields[name] = _parse_field(self.name, signature, completion, name, text, fields)
        return finish_parse(self.name, signature, completion, fields)


def _type_info(f: Field) -> str:
    if f.annotation is ToolCalls:
        return ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'
    if f.annotation is str:
        return ""
    return f" (must be formatted as a valid Python {annotation_name(f.annotation)})"


def _parse_field(
    adapter: str,
    signature: type[Signature],
    completion: str,
    name: str,
    value: Any,
    parsed: Mapping[str, Any],
) -> Any:
    try:
        return parse_value(value, signature.output_fields[name].annotation)
    except pydantic.ValidationError as e:
        reason = validation_reason(e)
        cause: Exception = e
    except ValueError as e:
        reason, cause = str(e), e
    raise FieldParseFailure(
        adapter,
        signature,
        completion,
        f"Failed to parse field {name!r}: {reason}",
        parsed,
        field=name,
    ) from cause


def finish_parse(
    adapter: str, signature: type[Signature], completion: str, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """Fill defaults, require every output field, and check the fields' constraints."""
    values = output_defaults(signature.output_fields, fields)
    missing = [n for n in signature.output_fields if n not in values]
    if missing:
        raise FieldParseFailure(
            adapter,
            signature,
            completion,
            f"the answer has no value for field {missing[0]!r}"
            + (f" (nor {missing[1:]})" if len(missing) > 1 else ""),
            values,
            field=missing[0] if fields else None,
        )
    if _has_constraints(signature):
        check_constraints(adapter, signature, completion, values)
    return values


def _has_constraints(signature: type[Signature]) -> bool:
    memo = signature_memo(signature)
    found: bool | None = memo.get("output_constraints")
    if found is None:
        found = any(f.constraints for f in signature.output_fields.values())
        memo["output_constraints"] = found
    return found


def check_constraints(
    adapter: str, signature: type[Signature], completion: str, values: Mapping[str, Any]
) -> None:
    """dspex validates declared constraints (``ge=0``...), where DSPy only shows them."""
    try:
        signature.output_model().model_validate(dict(values))
    except pydantic.ValidationError as e:
        loc = e.errors()[0].get("loc") or ("?",)
        raise FieldParseFailure(
            adapter, signature, completion, validation_reason(e), values, field=str(loc[0])
        ) from e
