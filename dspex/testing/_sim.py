"""The simulated model: a deterministic stand-in whose accuracy responds to the prompt.

For each request the simulator reads the prompt (instruction, demos, output fields, final
inputs), finds the example the inputs ask about, and answers it correctly with probability
``task.accuracy(...)`` for the prompt's features, plus a small per-prompt jitter. The coin is
a stable hash of the example and the sampling parameters, so the same prompt always gets the
same answer, in every process, and accuracy over a dataset rises exactly when the prompt's
features improve. Everything is decided synchronously; latency and faults are applied by the
transport in front of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dspex.datasets._task import SimTask
from dspex.lm._types import LMRequest
from dspex.primitives._example import Example
from dspex.testing._core import Counters, Faults, Reply, prompt_digest, rough_tokens, unit_hash
from dspex.testing._prompt import (
    OutputField,
    ParsedPrompt,
    format_answer,
    message_text,
    parse_prompt,
)
from dspex.testing._sim_rag import in_context
from dspex.testing._sim_tools import is_react_step, observations, react_step, tool_demo_counts

__all__ = ["Simulator"]

_REASONING_NAMES = ("reason", "rationale", "thought", "think")
_LITERAL = re.compile(r"Literal\[(.*)\]")
_SPACES = re.compile(r"\s+")


def _norm(value: Any) -> str:
    return _SPACES.sub(" ", str(value)).strip().strip("'\"`").rstrip(".").lower()


def _is_reasoning(name: str) -> bool:
    return any(r in name.lower() for r in _REASONING_NAMES)


class Simulator:
    """Answers prompts about a :class:`~dspex.datasets.SimTask` like a model of known skill.

    Args:
        task: the task whose gold answers, hints and pools drive the answers.
        seed: changes every coin; two seeds are two different "models" of the same skill.
        faults: fault rates (none by default).
        latency: seconds each answer takes (applied by the transport).
    """

    def __init__(
        self,
        task: SimTask,
        *,
        seed: int = 0,
        faults: Faults | None = None,
        latency: float = 0.0,
    ) -> None:
        self.task = task
        self.seed = seed
        self.faults = faults or Faults()
        self.latency = latency
        self.counters = Counters()
        self._by_inputs: dict[tuple[str, ...], int] = {}
        by_value: dict[str, int | None] = {}
        for i, ex in enumerate(task.examples):
            values = tuple(_norm(ex[k]) for k in task.input_keys)
            self._by_inputs.setdefault(values, i)
            for v in values:
                # A value shared by two examples is ambiguous: it identifies neither.
                by_value[v] = i if v not in by_value else None
        self._by_value = {v: i for v, i in by_value.items() if i is not None}
        self._groups = self._distractor_groups()
        self._items = self._plan_items()

    def _distractor_groups(self) -> dict[str, list[str]]:
        key = self.task.distractor_key
        groups: dict[str, list[str]] = {}
        for ex in self.task.examples:
            group = str(ex.get(key)) if key else ""
            groups.setdefault(group, []).append(str(ex[self.task.answer_key]))
        return groups

    def _plan_items(self) -> tuple[str, ...]:
        """The ``item`` arguments of a tool-use task's plans: the simulated agent's wrong
        lookups name one of them."""
        key = self.task.plan_key
        if key is None:
            return ()
        items = {
            str(call["args"]["item"])
            for ex in self.task.examples
            for call in ex[key]
            if "item" in call.get("args", {})
        }
        return tuple(sorted(items))

    @property
    def request_count(self) -> int:
        """How many requests this simulator has answered (faults included)."""
        return self.counters.requests

    # -- matching ----------------------------------------------------------------------
    def find(self, inputs: Mapping[str, str], fallback_text: str = "") -> int | None:
        """The index of the example these inputs ask about, or ``None``."""
        keys = self.task.input_keys
        if inputs and all(k in inputs for k in keys):
            hit = self._by_inputs.get(tuple(_norm(inputs[k]) for k in keys))
            if hit is not None:
                return hit
        # Tolerate renamed input fields and bare prompts: match any single input value.
        for value in (*inputs.values(), fallback_text):
            hit = self._by_value.get(_norm(value)) if value else None
            if hit is not None:
                return hit
        return None

    def _demo_counts(self, prompt: ParsedPrompt) -> tuple[int, int]:
        if self.task.plan_key is not None and is_react_step(prompt):
            return tool_demo_counts(self.task, self.find, prompt)
        right = wrong = 0
        key = self.task.answer_key
        for demo in prompt.demos:
            idx = self.find(demo.inputs)
            if idx is None or key not in demo.outputs:
                continue
            if _norm(demo.outputs[key]) == _norm(self.task.examples[idx][key]):
                right += 1
            else:
                wrong += 1
        return right, wrong

    def _answer_field(self, fields: tuple[OutputField, ...]) -> int:
        names = [f.name for f in fields]
        if self.task.answer_key in names:
            return names.index(self.task.answer_key)
        for i, name in enumerate(names):
            if not _is_reasoning(name) and not _special(name):
                return i
        return len(names) - 1

    def probability(self, prompt: ParsedPrompt) -> float:
        """The probability that this prompt gets a known example right."""
        fields = prompt.output_fields
        at = self._answer_field(fields) if fields else 0
        reasoning = any(_is_reasoning(f.name) for f in fields[:at])
        right, wrong = self._demo_counts(prompt)
        p = self.task.accuracy(
            hint=self.task.has_hint(prompt.instruction),
            correct_demos=right,
            wrong_demos=wrong,
            reasoning=reasoning,
        )
        # A prompt's wording matters a little beyond its features, as with a real model.
        demo_sig = tuple(sorted(str(sorted(d.inputs.items())) for d in prompt.demos))
        jitter = unit_hash("jitter", self.seed, prompt.instruction, demo_sig) - 0.5
        return min(max(p + jitter * self.task.prompt_jitter, 0.0), self.task.max_accuracy)

    # -- answering ---------------------------------------------------------------------
    def reply(self, request: LMRequest) -> Reply:
        """Answer one request (thread-safe; counts it)."""
        kwargs = request.kwargs
        key = prompt_digest(request.messages, kwargs)
        attempt = self.counters.start(f"{key}:{request.rollout_id}")
        fault = None
        if self.faults.any:
            fault = self.faults.draw(
                unit_hash("fault", self.seed, key, request.rollout_id, attempt)
            )
        if fault == "rate_limit":
            return Reply(fault="rate_limit", retry_after=self.faults.retry_after)
        if fault == "hang" or fault == "server_error":
            return Reply(fault=fault)
        prompt = parse_prompt(request.messages, kwargs)
        n = _choices(kwargs)
        values = [self.answer(prompt, key, _sample(request, i)) for i in range(n)]
        texts = [format_answer(v, json_mode=prompt.json_mode) for v in values]
        reasons = ["stop"] * n
        if fault == "malformed":
            texts = [_malformed(v) for v in values]
        elif fault == "truncated":
            texts, reasons = [_truncate(t, prompt.json_mode) for t in texts], ["length"] * n
        prompt_tokens = sum(rough_tokens(message_text(m)) for m in request.messages)
        completion_tokens = sum(rough_tokens(t) for t in texts)
        self.counters.add_tokens(prompt_tokens, completion_tokens)
        return Reply(tuple(texts), prompt_tokens, completion_tokens, tuple(reasons))

    def answer(self, prompt: ParsedPrompt, key: str, sample: tuple[object, ...]) -> dict[str, Any]:
        """The output values for one choice: every requested field, in the prompt's order."""
        fields = prompt.output_fields or (OutputField(self.task.answer_key, self.task.answer_type),)
        idx = self.find(prompt.inputs, prompt.last_user_text)
        if idx is not None and self.task.plan_key is not None and is_react_step(prompt):
            steps = len(observations(prompt.inputs))
            coin = (self.task.name, self.seed, idx, steps, sample)
            return react_step(self.task, idx, prompt, self.probability(prompt), coin, self._items)
        at = self._answer_field(fields)
        value = self._answer_value(prompt, idx, sample)
        values: dict[str, Any] = {}
        for i, f in enumerate(fields):
            if _special(f.name):
                values[f.name] = self._pool_text(f.name, key, sample, prompt)
            elif i == at:
                values[f.name] = _typed(value, f.type, prompt.json_mode)
            elif _is_reasoning(f.name):
                values[f.name] = self._reasoning(idx, value, sample)
            else:
                values[f.name] = _filler(f, key, prompt.json_mode)
        return values

    def _answer_value(
        self, prompt: ParsedPrompt, idx: int | None, sample: tuple[object, ...]
    ) -> Any:
        task = self.task
        if idx is None:
            return self._unknown(prompt, sample)
        copied = self._copied_demo(prompt, idx)
        if copied is not None:  # a demo answers this very question: models copy it
            return copied
        gold = task.examples[idx][task.answer_key]
        if task.plan_key is not None:
            # An agent's answer is only as good as its tool calls: right when one observed it.
            seen = {_norm(o) for o in observations(prompt.inputs)}
            correct = _norm(gold) in seen
        elif task.needs_context and not in_context(task, prompt, gold):
            # The answer passage was not retrieved: the model can only guess.
            u = unit_hash("closed-book", task.name, self.seed, idx, sample)
            correct = u < task.closed_book_accuracy
        else:
            u = unit_hash("correct", task.name, self.seed, idx, sample)
            correct = u < self.probability(prompt)
        if correct:
            return gold
        return self._wrong(
            task.examples[idx], unit_hash("wrong", task.name, self.seed, idx, sample)
        )

    def _copied_demo(self, prompt: ParsedPrompt, idx: int) -> Any:
        key = self.task.answer_key
        for demo in prompt.demos:
            if key in demo.outputs and self.find(demo.inputs) == idx:
                value = demo.outputs[key]
                if self.task.answer_type == "int" and str(value).strip().lstrip("-").isdigit():
                    return int(str(value).strip())
                return value
        return None

    def _wrong(self, example: Example, u: float) -> Any:
        gold = example[self.task.answer_key]
        if self.task.answer_type == "int":
            delta = (1, -1, 2, -2, 3, -3, 10, -10)[int(u * 8)]
            return gold + delta if gold + delta >= 0 else gold + abs(delta)
        group = str(example.get(self.task.distractor_key)) if self.task.distractor_key else ""
        others = [a for a in self._groups.get(group, ()) if a != str(gold)]
        return others[int(u * len(others))] if others else f"Not {gold}"

    def _unknown(self, prompt: ParsedPrompt, sample: tuple[object, ...]) -> Any:
        u = unit_hash("unknown", self.seed, sorted(prompt.inputs.items()), sample)
        if self.task.answer_type == "int":
            return int(u * 100)
        answers = [a for group in self._groups.values() for a in group]
        return answers[int(u * len(answers))]

    def _reasoning(self, idx: int | None, value: Any, sample: tuple[object, ...]) -> str:
        if idx is None:
            return f"Considering the inputs carefully, the most plausible answer is {value}."
        question = str(self.task.examples[idx][self.task.input_keys[0]])
        first = question.split("?")[0].split(". ")[0]
        openers = (
            "Let's think this through.",
            "Reading the question step by step.",
            "First, identify what is asked.",
        )
        opener = openers[int(unit_hash("opener", idx, sample) * len(openers))]
        if self.task.answer_type == "int":
            return f"{opener} {first}. Combining the quantities gives {value}."
        return f"{opener} The question concerns: {first}. The answer is {value}."

    def _pool_text(
        self, name: str, key: str, sample: tuple[object, ...], prompt: ParsedPrompt
    ) -> str:
        low = name.lower()
        pool = self.task.instruction_pool if "instruction" in low else self.task.summary_pool
        if not pool:
            return f"A {name.replace('_', ' ')}."
        if "instruction" in low and _grounded(prompt):
            # Shown a summary of the data or example demos, a real model proposes a fitting
            # instruction more often than a blind guess: half the time, one with a hint.
            hinted = [i for i in pool if self.task.has_hint(i)]
            if hinted and unit_hash("grounded", self.seed, key, sample) < GROUNDED_HINT_RATE:
                return hinted[int(unit_hash("pool", self.seed, key, sample) * len(hinted))]
        return pool[int(unit_hash("pool", self.seed, key, sample) * len(pool))]


GROUNDED_HINT_RATE = 0.5


def _grounded(prompt: ParsedPrompt) -> bool:
    """Whether an instruction request carries grounding: a data summary or example demos."""
    return any(
        any(w in k.lower() for w in ("summary", "demo", "example")) and len(v.strip()) > 20
        for k, v in prompt.inputs.items()
    )


def _special(name: str) -> bool:
    low = name.lower()
    return "instruction" in low or "summary" in low or "description" in low


def _choices(kwargs: Mapping[str, Any]) -> int:
    try:
        return max(1, int(kwargs.get("n") or 1))
    except (TypeError, ValueError):
        return 1


def _sample(request: LMRequest, choice: int) -> tuple[object, ...]:
    """What makes two identical prompts sample differently: only when temperature > 0."""
    kwargs = request.kwargs
    try:
        temperature = float(kwargs.get("temperature") or 0.0)
    except (TypeError, ValueError):
        temperature = 0.0
    if temperature <= 0:
        return (kwargs.get("seed"),)
    return (kwargs.get("seed"), request.rollout_id, round(temperature, 3), choice)


def _typed(value: Any, type_name: str, json_mode: bool) -> Any:
    t = type_name.replace(" ", "").lower()
    if json_mode and t == "int" and isinstance(value, int):
        return value
    if json_mode and t == "float" and isinstance(value, int | float):
        return float(value)
    return str(value)


def _filler(field: OutputField, key: str, json_mode: bool) -> Any:
    """A plausible value of the declared type for a field the task knows nothing about."""
    t = field.type.replace(" ", "")
    low = t.lower()
    u = unit_hash("filler", key, field.name)
    literal = _LITERAL.search(t)
    if literal:
        options = [o.strip().strip("'\"") for o in literal.group(1).split(",") if o.strip()]
        return options[int(u * len(options))] if options else ""
    if low == "bool":
        return u < 0.5
    if low == "int":
        return int(u * 10)
    if low == "float":
        return round(u, 2)
    if low.startswith("list"):
        return [f"{field.name.replace('_', ' ')} item"]
    if low.startswith("dict"):
        return {}
    return f"A short {field.name.replace('_', ' ')} for the given input."


def _malformed(values: Mapping[str, Any]) -> str:
    """An answer with no field markers and no JSON, which no adapter can parse."""
    said = "; ".join(f"my {k} would be {v}" for k, v in values.items())
    return f"Sure! Here is what I think: {said}."


def _truncate(text: str, json_mode: bool) -> str:
    """Cut an answer off before the answer field is complete (as with max_tokens)."""
    if json_mode:
        return text[: max(1, len(text) // 2)]
    last = text.rfind("[[ ## ", 0, text.rfind("[[ ## completed"))
    return text[: last + 7] if last >= 0 else text[: max(1, len(text) // 2)]
