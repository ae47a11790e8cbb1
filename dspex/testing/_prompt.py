"""Read a chat prompt in the field-marker format back into its parts, and write answers in it.

The test doubles see only messages, like a hosted model does. This module recovers what the
adapter put there: the instruction, the output fields (names and types, in order), the demos
(user/assistant pairs) and the final inputs. Parsing is tolerant: anything it cannot find is
left empty rather than raising, since a real model would answer something anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "COMPLETED",
    "Demo",
    "OutputField",
    "ParsedPrompt",
    "format_answer",
    "message_text",
    "parse_prompt",
    "parse_sections",
    "render_value",
]

COMPLETED = "completed"
_MARKER = re.compile(r"^\[\[ ## (\w+) ## \]\][ \t]*$", re.MULTILINE)
_FIELD_LINE = re.compile(r"^\s*\d+\.\s*`(\w+)`\s*(?:\((.*?)\))?\s*(?::|$)")
_OBJECTIVE = re.compile(r"your objective is:\s*", re.IGNORECASE)
# The final user message ends with a paragraph telling the model how to answer; it is not
# part of the last input's value.
_RESPOND_TAIL = re.compile(r"\n\s*\n\s*Respond with\b.*\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class OutputField:
    """An output field the prompt asks for: its name and its type as written (``"int"``)."""

    name: str
    type: str = "str"


@dataclass(frozen=True, slots=True)
class Demo:
    """One few-shot demo: the user's input sections and the assistant's output values."""

    inputs: Mapping[str, str]
    outputs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ParsedPrompt:
    """The parts of a prompt (see :func:`parse_prompt`)."""

    instruction: str
    output_fields: tuple[OutputField, ...]
    demos: tuple[Demo, ...]
    inputs: Mapping[str, str]
    last_user_text: str
    json_mode: bool


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return "" if content is None else str(content)


def parse_sections(text: str) -> dict[str, str]:
    """The ``[[ ## name ## ]]`` sections of a text (markers must start a line).

    Example:
        >>> parse_sections("[[ ## answer ## ]]\\n42\\n\\n[[ ## completed ## ]]")
        {'answer': '42'}
    """
    parts = _MARKER.split(text)
    # split() alternates: text before the first marker, name, value, name, value, ...
    sections: dict[str, str] = {}
    for i in range(1, len(parts) - 1, 2):
        name = parts[i]
        if name != COMPLETED:
            sections.setdefault(name, parts[i + 1].strip())
    return sections


def _parse_outputs(text: str) -> dict[str, Any]:
    """An assistant message's values: field sections, or a JSON object in JSON mode."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return parse_sections(text)


@dataclass(frozen=True, slots=True)
class _System:
    instruction: str
    outputs: tuple[OutputField, ...]
    json_outputs: bool


@lru_cache(maxsize=256)
def _parse_system(system: str) -> _System:
    # Cached: a program sends the same system message with every request.
    outputs: list[OutputField] = []
    in_outputs = False
    for line in system.splitlines():
        low = line.strip().lower()
        if low.startswith("your output fields are"):
            in_outputs = True
            continue
        if in_outputs and (low.startswith("all interactions") or low.startswith("your ")):
            break
        match = _FIELD_LINE.match(line) if in_outputs else None
        if match:
            outputs.append(OutputField(match.group(1), (match.group(2) or "str").strip()))
    found = _OBJECTIVE.search(system)
    instruction = system[found.end() :] if found else system
    instruction = "\n".join(line.strip() for line in instruction.strip().splitlines())
    return _System(instruction, tuple(outputs), "outputs will be a json object" in system.lower())


def _final_inputs(text: str) -> dict[str, str]:
    sections = parse_sections(text)
    if sections:
        last = next(reversed(sections))
        sections[last] = _RESPOND_TAIL.sub("", sections[last]).strip()
    return sections


def parse_prompt(
    messages: Sequence[Mapping[str, Any]], kwargs: Mapping[str, Any] | None = None
) -> ParsedPrompt:
    """Split a chat prompt into instruction, output fields, demos and final inputs.

    Args:
        messages: the chat messages, system first.
        kwargs: the request parameters; a ``response_format`` turns on JSON mode.

    Example:
        >>> p = parse_prompt([
        ...     {"role": "system", "content": "Your output fields are:\\n1. `answer` (int)"},
        ...     {"role": "user", "content": "[[ ## question ## ]]\\n1+1?"},
        ... ])
        >>> p.output_fields[0], dict(p.inputs)
        (OutputField(name='answer', type='int'), {'question': '1+1?'})
    """
    system = ""
    rest = list(messages)
    if rest and rest[0].get("role") == "system":
        system = message_text(rest.pop(0))
    info = _parse_system(system)
    last_user = ""
    if rest and rest[-1].get("role") == "user":
        last_user = message_text(rest.pop())
    demos = []
    for user, assistant in zip(rest[::2], rest[1::2]):
        if user.get("role") == "user" and assistant.get("role") == "assistant":
            demos.append(_demo(message_text(user), message_text(assistant)))
    json_mode = bool(kwargs and kwargs.get("response_format")) or info.json_outputs
    return ParsedPrompt(
        instruction=info.instruction,
        output_fields=info.outputs,
        demos=tuple(demos),
        inputs=_final_inputs(last_user),
        last_user_text=last_user,
        json_mode=json_mode,
    )


@lru_cache(maxsize=4096)
def _demo(user_text: str, assistant_text: str) -> Demo:
    # Cached: the same demos come back in every request of an optimized program. A turn of a
    # conversation history ends with the format reminder, as the final message does.
    return Demo(_final_inputs(user_text), _parse_outputs(assistant_text))


def render_value(value: Any) -> str:
    """A value as it appears in a field section: strings as-is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return json.dumps(value, ensure_ascii=False)


def format_answer(values: Mapping[str, Any], *, json_mode: bool) -> str:
    """Write output values as an assistant answer: field sections, or one JSON object.

    Example:
        >>> print(format_answer({"answer": 4}, json_mode=False))
        [[ ## answer ## ]]
        4
        <BLANKLINE>
        [[ ## completed ## ]]
    """
    if json_mode:
        return json.dumps(dict(values), ensure_ascii=False)
    parts = [f"[[ ## {name} ## ]]\n{render_value(value)}\n\n" for name, value in values.items()]
    return "".join(parts) + f"[[ ## {COMPLETED} ## ]]"
