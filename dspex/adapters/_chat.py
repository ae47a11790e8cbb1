"""``ChatAdapter``: DSPy's field-marker format, so prompts are portable between the two.

Each field is a section headed ``[[ ## name ## ]]``; an answer ends with
``[[ ## completed ## ]]``. The system message lists the fields and the instructions; each demo
is a user/assistant pair; the last user message holds the inputs.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dspex.adapters._base import (
    Adapter,
    FieldParseFailure,
    describe_fields,
    format_value,
    parse_value,
    type_hint,
    validate_outputs,
)

if TYPE_CHECKING:
    from dspex.signatures import Signature

__all__ = ["ChatAdapter"]

_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def _section(name: str, value: str) -> str:
    return f"[[ ## {name} ## ]]\n{value}"


class ChatAdapter(Adapter):
    """Renders and parses DSPy's ``[[ ## field ## ]]`` format.

    Example:
        >>> import dspex
        >>> sig = dspex.Signature("question -> answer")
        >>> msgs = dspex.ChatAdapter().format(sig, [], {"question": "2+2?"})
        >>> print(msgs[-1]["content"].splitlines()[0])
        [[ ## question ## ]]
    """

    name = "ChatAdapter"

    def system_message(self, signature: type[Signature]) -> str:
        # Rendered once per (adapter class, signature): signatures are immutable.
        key = f"_dspex_system_{type(self).__name__}"
        cached: str | None = signature.__dict__.get(key)
        if cached is None:
            cached = self._render_system(signature)
            setattr(signature, key, cached)
        return cached

    def _render_system(self, signature: type[Signature]) -> str:
        structure = [_section(n, f"{{{n}}}") for n in signature.input_fields]
        for name, f in signature.output_fields.items():
            hint = type_hint(f)
            note = f"        # note: the value you produce {hint}" if hint else ""
            structure.append(_section(name, f"{{{name}}}{note}"))
        structure.append("[[ ## completed ## ]]")
        instructions = textwrap.indent(signature.instructions, " " * 8)
        return (
            f"Your input fields are:\n{describe_fields(signature.input_fields)}\n"
            f"Your output fields are:\n{describe_fields(signature.output_fields)}\n"
            "All interactions will be structured in the following way, with the appropriate "
            "values filled in.\n\n"
            + "\n\n".join(structure)
            + f"\nIn adhering to this structure, your objective is: \n{instructions}"
        )

    def user_message(self, signature: type[Signature], inputs: Mapping[str, Any]) -> str:
        parts = [
            _section(n, format_value(inputs[n])) for n in signature.input_fields if n in inputs
        ]
        return "\n\n".join(parts)

    def assistant_message(self, signature: type[Signature], outputs: Mapping[str, Any]) -> str:
        parts = [
            _section(n, format_value(outputs[n])) for n in signature.output_fields if n in outputs
        ]
        return "\n\n".join([*parts, "[[ ## completed ## ]]"])

    def _instruction_tail(self, signature: type[Signature]) -> str:
        fields = []
        for name, f in signature.output_fields.items():
            hint = type_hint(f)
            fields.append(f"`[[ ## {name} ## ]]`" + (f" ({hint})" if hint else ""))
        first, rest = fields[0], fields[1:]
        then = "".join(f", then {r}" for r in rest)
        return (
            f"Respond with the corresponding output fields, starting with the field {first}"
            f"{then}, and then ending with the marker for `[[ ## completed ## ]]`."
        )

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_message(signature)}
        ]
        for demo in demos:
            if not all(n in demo for n in signature.input_fields):
                continue  # a demo without all inputs teaches nothing about this signature
            messages.append({"role": "user", "content": self.user_message(signature, demo)})
            messages.append(
                {"role": "assistant", "content": self.assistant_message(signature, demo)}
            )
        last = self.user_message(signature, inputs) + "\n\n" + self._instruction_tail(signature)
        messages.append({"role": "user", "content": last})
        return messages

    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        sections: dict[str, str] = {}
        matches = list(_HEADER.finditer(text))
        for i, m in enumerate(matches):
            name = m.group(1)
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            if name in signature.output_fields and name not in sections:
                sections[name] = text[m.end() : end].strip()
        if not sections:
            raise FieldParseFailure(None, "no [[ ## field ## ]] sections found in the answer")
        values = {
            n: parse_value(v, signature.output_fields[n].annotation) for n, v in sections.items()
        }
        return validate_outputs(signature, values)
