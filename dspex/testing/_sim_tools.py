"""The simulated model as a ReAct agent, on a task whose examples carry a gold tool ``plan``.

A ReAct step (a prompt asking for ``next_tool_name`` and ``next_tool_args``) is answered by
reading the trajectory so far from the prompt's inputs (``tool_name_0``, ``observation_0``,
...): step ``k`` makes the plan's ``k``-th call, its arguments filled in from the observations
the agent actually got, with the task's accuracy for the prompt's features; otherwise a
plausible wrong call (another field or item, an operand off by a little). Once the plan is
done the agent calls ``finish``. A wrong call yields a wrong observation, which later steps
build on, as with a real agent. The final answer is right only when an observation holds it.

A trajectory demo is *correct* when every call in its trajectory, and its own, is the one the
plan asks for at that point, so bootstrapped traces of successful runs raise the accuracy and
trajectories with a wrong call lower it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dspex.datasets._task import SimTask
from dspex.testing._core import unit_hash
from dspex.testing._prompt import ParsedPrompt

__all__ = ["expected_call", "is_react_step", "observations", "react_step", "tool_demo_counts"]

_STEP_FIELDS = ("next_tool_name", "next_tool_args")
_LAST_INT = re.compile(r"(-?\d+)(?!.*\d)", re.DOTALL)
_DELTAS = (1, -1, 2, -2, 3, 10)

Call = tuple[str, dict[str, Any]]


def is_react_step(prompt: ParsedPrompt) -> bool:
    """Whether the prompt is a ReAct step (it asks for a tool name and its arguments)."""
    names = {f.name for f in prompt.output_fields}
    return all(f in names for f in _STEP_FIELDS)


def _args(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _steps(inputs: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """The trajectory in a prompt's inputs: ``(tool name, args, observation)`` per step."""
    steps = []
    k = 0
    while f"tool_name_{k}" in inputs:
        steps.append(
            (
                str(inputs[f"tool_name_{k}"]).strip(),
                _args(inputs.get(f"tool_args_{k}", "{}")),
                str(inputs.get(f"observation_{k}", "")).strip(),
            )
        )
        k += 1
    return steps


def observations(inputs: Mapping[str, Any]) -> list[str]:
    """The observations of the trajectory in a prompt's inputs, in order."""
    return [obs for _, _, obs in _steps(inputs)]


def expected_call(plan: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> Call:
    """The call the plan asks for after the trajectory in ``inputs`` (``finish`` when done),
    its arguments filled in from the observations the agent got."""
    return _planned(plan, observations(inputs))


def _planned(plan: Sequence[Mapping[str, Any]], seen: Sequence[str]) -> Call:
    if len(seen) >= len(plan):
        return "finish", {}
    step = plan[len(seen)]
    args = {k: str(v).format(*seen) if "{" in str(v) else v for k, v in step["args"].items()}
    return str(step["tool"]), args


def _same(call: Call, name: Any, args: Any) -> bool:
    if str(name).strip() != call[0] or not isinstance(args, Mapping):
        return False
    return {k: str(v) for k, v in args.items()} == {k: str(v) for k, v in call[1].items()}


def tool_demo_counts(task: SimTask, find: Any, prompt: ParsedPrompt) -> tuple[int, int]:
    """``(correct, wrong)`` trajectory demos of a ReAct step prompt."""
    right = wrong = 0
    for demo in prompt.demos:
        idx = find(demo.inputs)
        if idx is None or "next_tool_name" not in demo.outputs or task.plan_key is None:
            continue
        plan = task.examples[idx][task.plan_key]
        steps = _steps(demo.inputs)
        # A demo teaches its whole trajectory: every call in it, and its own, must be planned.
        calls = [(name, args) for name, args, _ in steps]
        calls.append((demo.outputs["next_tool_name"], _args(demo.outputs.get("next_tool_args"))))
        seen = [obs for _, _, obs in steps]
        if all(_same(_planned(plan, seen[:k]), *call) for k, call in enumerate(calls)):
            right += 1
        else:
            wrong += 1
    return right, wrong


def _wrong_call(call: Call, u: float, items: Sequence[str]) -> Call:
    """A plausible mistake: another field or item for a lookup, an operand off by a little."""
    name, args = call
    if "expression" in args:
        expression = str(args["expression"])
        delta = _DELTAS[int(u * len(_DELTAS))]
        return name, {
            "expression": _LAST_INT.sub(lambda m: str(int(m.group(1)) + delta), expression)
        }
    if "field" in args and u < 0.5:
        fields = [f for f in ("price", "stock", "weight") if f != args["field"]]
        return name, {**args, "field": fields[int(u * 2 * len(fields)) % len(fields)]}
    if "item" in args and items:
        at = items.index(args["item"]) if args["item"] in items else 0
        return name, {**args, "item": items[(at + 1 + int(u * 7)) % len(items)]}
    return name, {}


def _thought(call: Call) -> str:
    name, args = call
    if name == "finish":
        return "The trajectory holds what I need to answer."
    if name == "lookup":
        return f"I need the {args.get('field')} of {args.get('item')} from the catalog."
    if name == "calculator":
        return f"Now I compute {args.get('expression')}."
    return f"I will call {name}."


def react_step(
    task: SimTask,
    idx: int,
    prompt: ParsedPrompt,
    probability: float,
    coin: tuple[object, ...],
    items: Sequence[str],
) -> dict[str, Any]:
    """The values of one ReAct step: ``next_thought``, ``next_tool_name``, ``next_tool_args``."""
    plan = task.examples[idx][task.plan_key] if task.plan_key else []
    call = expected_call(plan, prompt.inputs)
    if call[0] != "finish" and unit_hash("tool", *coin) >= probability:
        call = _wrong_call(call, unit_hash("wrong-tool", *coin), items)
    values: dict[str, Any] = {}
    for f in prompt.output_fields:
        if f.name == "next_tool_name":
            values[f.name] = call[0]
        elif f.name == "next_tool_args":
            values[f.name] = call[1]
        else:
            values[f.name] = _thought(call)
    return values
