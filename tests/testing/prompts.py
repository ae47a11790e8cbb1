"""Build prompts in the ChatAdapter field-marker format, without an adapter."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Message = dict[str, str]


def system_message(
    instruction: str,
    outputs: Sequence[tuple[str, str, str]],
    inputs: Sequence[tuple[str, str, str]] = (("question", "str", "the question"),),
) -> Message:
    lines = ["Your input fields are:"]
    lines += [f"{i}. `{n}` ({t}): {d}" for i, (n, t, d) in enumerate(inputs, 1)]
    lines.append("Your output fields are:")
    lines += [f"{i}. `{n}` ({t}): {d}" for i, (n, t, d) in enumerate(outputs, 1)]
    lines.append(
        "All interactions will be structured in the following way, with the appropriate "
        "values filled in.\n"
    )
    for n, _, _ in inputs:
        lines.append(f"[[ ## {n} ## ]]\n{{{n}}}\n")
    for n, t, _ in outputs:
        note = (
            f"        # note: the value you produce must be a single {t} value"
            if t != "str"
            else ""
        )
        lines.append(f"[[ ## {n} ## ]]\n{{{n}}}{note}\n")
    lines.append("[[ ## completed ## ]]")
    lines.append(f"In adhering to this structure, your objective is: \n        {instruction}")
    return {"role": "system", "content": "\n".join(lines)}


def sections(values: Mapping[str, Any]) -> str:
    return "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in values.items())


def chat_prompt(
    question: str,
    *,
    instruction: str = "Answer the question.",
    reasoning: bool = False,
    demos: Sequence[tuple[str, Any]] = (),
    answer_type: str = "int",
) -> list[Message]:
    """Messages for ``question -> [reasoning,] answer`` with ``demos`` as (question, answer)."""
    outputs = [("answer", answer_type, "the answer")]
    if reasoning:
        outputs.insert(0, ("reasoning", "str", "think step by step"))
    messages = [system_message(instruction, outputs)]
    for q, a in demos:
        messages.append({"role": "user", "content": sections({"question": q})})
        out = {"reasoning": "Not supplied for this particular example."} if reasoning else {}
        out["answer"] = a
        messages.append(
            {"role": "assistant", "content": sections(out) + "\n\n[[ ## completed ## ]]"}
        )
    order = ", then ".join(f"`[[ ## {n} ## ]]`" for n, _, _ in outputs)
    tail = (
        f"Respond with the corresponding output fields, starting with the field {order}, and "
        "then ending with the marker for `[[ ## completed ## ]]`."
    )
    messages.append({"role": "user", "content": sections({"question": question}) + "\n\n" + tail})
    return messages


def parse_answer(text: str) -> str | None:
    """The answer field of a field-marker or JSON reply, or None when unparseable."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return str(json.loads(stripped)["answer"])
        except (ValueError, KeyError):
            return None
    marker = "[[ ## answer ## ]]"
    if marker not in text or "[[ ## completed ## ]]" not in text:
        return None
    return text.split(marker, 1)[1].split("[[ ##", 1)[0].strip()
