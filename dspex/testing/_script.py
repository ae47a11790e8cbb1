"""The script behind ``DummyLM``: scripted answers, given in order or by input substring.

A script never invents an answer: when it runs out, or no key matches, it raises
``ScriptExhaustedError`` saying what it was asked. With ``follow_examples`` (DSPy's mode 3) a
demo in the prompt whose input matches the final input answers first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from dspex.errors import ScriptExhaustedError, UserError
from dspex.lm._types import LMRequest, LMToolCall
from dspex.testing._core import Counters, Reply, rough_tokens
from dspex.testing._prompt import ParsedPrompt, format_answer, message_text, parse_prompt

__all__ = ["Answer", "Script", "ScriptedReply"]


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """A scripted answer with the finish reason the provider reports for it.

    ``ScriptedReply(text, finish_reason="length")`` plays an answer cut off at the token limit.

    Example:
        >>> from dspex.testing import DummyLM, ScriptedReply
        >>> lm = DummyLM([ScriptedReply("Once upon a", finish_reason="length")])
        >>> lm.forward([{"role": "user", "content": "?"}]).finish_reasons
        ('length',)
    """

    answer: Mapping[str, Any] | str
    finish_reason: str = "stop"


Answer: TypeAlias = Mapping[str, Any] | str | ScriptedReply
"""A scripted answer: output values (formatted like a model would), raw text (verbatim), or
either wrapped in a :class:`ScriptedReply` to set its finish reason."""


def _check(answer: object, where: str) -> Answer:
    inner = answer.answer if isinstance(answer, ScriptedReply) else answer
    if isinstance(answer, ScriptedReply | str | Mapping) and isinstance(inner, str | Mapping):
        return answer
    raise UserError(
        f"DummyLM {where}: an answer must be a dict of output values or a raw string "
        f"(optionally in a ScriptedReply), got {type(inner).__name__}."
    )


class Script:
    """Answers from a list (consumed in order) or a mapping of input substring -> answer.

    Args:
        answers: a list of answers, or a mapping whose keys are looked up as substrings of the
            last user message (first matching key wins; mapped answers can be reused).
        follow_examples: answer with the outputs of the last demo in the prompt whose first
            input equals the final one (as DSPy's ``DummyLM(follow_examples=True)``); the
            script answers when no demo matches.
        json_mode: answer as a JSON object (``True``) or in field sections (``False``);
            ``None`` follows the prompt (JSON when it asks for a JSON object).
    """

    latency = 0.0

    def __init__(
        self,
        answers: Sequence[Answer] | Mapping[str, Answer],
        *,
        follow_examples: bool = False,
        json_mode: bool | None = None,
    ) -> None:
        self.follow_examples = follow_examples
        self.json_mode = json_mode
        self._lock = threading.Lock()
        self.counters = Counters()
        self.requests: list[LMRequest] = []
        self._mapping: dict[str, Answer] | None = None
        self._queue: list[Answer] = []
        self._used = 0
        if isinstance(answers, Mapping):
            self._mapping = {str(k): _check(v, f"answer for {k!r}") for k, v in answers.items()}
        elif isinstance(answers, str) or not isinstance(answers, Sequence):
            raise UserError(
                "DummyLM(answers): pass a list of answers ([{'answer': '4'}, ...]) or a mapping "
                "from an input substring to an answer."
            )
        else:
            self._queue = [_check(a, f"answer #{i}") for i, a in enumerate(answers)]

    @property
    def request_count(self) -> int:
        return self.counters.requests

    @property
    def remaining(self) -> int | None:
        """How many scripted answers are left (``None`` for a mapping script)."""
        with self._lock:
            return None if self._mapping is not None else len(self._queue) - self._used

    def reply(self, request: LMRequest) -> Reply:
        """Format the next scripted answer(s) for ``request``; one per requested choice."""
        self.counters.start("")
        with self._lock:
            self.requests.append(request)
        prompt = parse_prompt(request.messages, request.kwargs)
        n = max(1, int(request.kwargs.get("n") or 1))
        demo = _matching_demo(prompt) if self.follow_examples else None
        answers: list[Answer] = [demo] * n if demo is not None else self._take(prompt, n)
        json_mode = self.json_mode if self.json_mode is not None else prompt.json_mode
        calls: tuple[tuple[LMToolCall, ...], ...] = ()
        if request.kwargs.get("tools"):
            # Native function calling: a scripted ``tool_calls`` list is the message's calls.
            calls, answers = _split_tool_calls(answers, len(self.requests))
        texts = tuple(self._render(a, prompt, json_mode) for a in answers)
        reasons = tuple(
            a.finish_reason if isinstance(a, ScriptedReply) else "stop" for a in answers
        )
        prompt_tokens = sum(rough_tokens(message_text(m)) for m in request.messages)
        completion_tokens = sum(rough_tokens(t) for t in texts)
        self.counters.add_tokens(prompt_tokens, completion_tokens)
        return Reply(texts, prompt_tokens, completion_tokens, reasons, tool_calls=calls)

    def _take(self, prompt: ParsedPrompt, n: int) -> list[Answer]:
        asked = prompt.last_user_text
        if self._mapping is not None:
            for key, answer in self._mapping.items():
                if key in asked:
                    return [answer] * n
            raise ScriptExhaustedError(
                f"DummyLM has no answer for this request: none of its keys "
                f"{list(self._mapping)[:10]} occurs in the last user message:\n{_shown(asked)}\n"
                "Add a key that occurs in that message."
            )
        with self._lock:
            left = len(self._queue) - self._used
            if left < n:
                raise ScriptExhaustedError(
                    f"DummyLM ran out of scripted answers: it had {len(self._queue)}, "
                    f"{self._used} are used, and request #{len(self.requests)} asks for {n}: "
                    f"{_describe(prompt)}\n"
                    "Add answers to the script (or check why the program made an extra call)."
                )
            taken = self._queue[self._used : self._used + n]
            self._used += n
            return taken

    @staticmethod
    def _render(answer: Answer, prompt: ParsedPrompt, json_mode: bool) -> str:
        if isinstance(answer, ScriptedReply):
            answer = answer.answer
        if isinstance(answer, str):
            return answer
        if not answer:
            return ""  # an answer that is only tool calls has no text
        # Fields in the order the prompt asks for them, then any extra the script gave.
        order = [f.name for f in prompt.output_fields if f.name in answer]
        order += [k for k in answer if k not in order]
        return format_answer({k: answer[k] for k in order}, json_mode=json_mode)


def _split_tool_calls(
    answers: Sequence[Answer], request_no: int
) -> tuple[tuple[tuple[LMToolCall, ...], ...], list[Answer]]:
    """Take each answer's ``"tool_calls": [{"name": ..., "args": {...}}]`` out as the choice's
    native function calls; the answer's other values stay its text."""
    calls: list[tuple[LMToolCall, ...]] = []
    rest: list[Answer] = []
    for i, answer in enumerate(answers):
        inner = answer.answer if isinstance(answer, ScriptedReply) else answer
        scripted = inner.get("tool_calls") if isinstance(inner, Mapping) else None
        if not isinstance(scripted, list) or not isinstance(inner, Mapping):
            calls.append(())
            rest.append(answer)
            continue
        calls.append(
            tuple(
                LMToolCall(
                    str(c["name"]),
                    _arguments_text(c.get("args", c.get("arguments", {}))),
                    f"call_{request_no}_{i}_{j}",
                )
                for j, c in enumerate(scripted)
            )
        )
        others = {k: v for k, v in inner.items() if k != "tool_calls"}
        rest.append(
            ScriptedReply(others, answer.finish_reason)
            if isinstance(answer, ScriptedReply)
            else others
        )
    return (tuple(calls) if any(calls) else ()), rest


def _arguments_text(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args)


def _matching_demo(prompt: ParsedPrompt) -> Mapping[str, Any] | None:
    """The outputs of the last demo whose first input equals the final one (DSPy matches the
    final message's first paragraph, which is that input's section)."""
    if not prompt.inputs:
        return None
    name, value = next(iter(prompt.inputs.items()))
    for demo in reversed(prompt.demos):
        if demo.outputs and demo.inputs.get(name) == value:
            return demo.outputs
    return None


def _describe(prompt: ParsedPrompt) -> str:
    fields = [f.name for f in prompt.output_fields]
    wants = f"fields {fields}" if fields else "an answer"
    if prompt.inputs:
        given = ", ".join(f"{k}={_shown(v, 200)!r}" for k, v in prompt.inputs.items())
        return f"{wants} for inputs {given}."
    return f"{wants} for the message:\n{_shown(prompt.last_user_text)}"


def _shown(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"
