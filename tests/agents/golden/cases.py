"""ReAct runs whose LM requests dspex must write exactly as DSPy 3.4 writes them.

Plain data and plain functions (pydantic only, no framework import): read by
``benchmarks/dspy_golden_react.py``, which runs each case with DSPy and writes the requests
DSPy sent to ``react.json``, and by ``tests/agents/test_golden_react.py``, which runs the
same case with dspex and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

_FACTS = {"Paris": {"country": "France", "population": 2102650}}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def lookup(
    city: str,
    field: Literal["population", "country"] = "country",
    aliases: list[str] | None = None,
) -> dict[str, Any]:
    """Look up a fact about a city.

    Args:
        city: the city's name.
        field: which fact.
    """
    return {"city": city, field: _FACTS.get(city, {}).get(field)}


class Point(pydantic.BaseModel):
    """A point on the plane."""

    x: float
    y: float = 0.0


def distance(p: Point, q: Point | None = None) -> float:
    """Distance between two points (the origin by default)."""
    q = q or Point(x=0.0)
    return float(((p.x - q.x) ** 2 + (p.y - q.y) ** 2) ** 0.5)


async def search(query: str, k: int = 2) -> list[str]:
    """Search the notes."""
    return [f"note {i} about {query}" for i in range(k)]


TOOLS = {f.__name__: f for f in (add, lookup, distance, search)}


@dataclass(frozen=True)
class ReactCase:
    """One ReAct run: its signature, tools, the LM's scripted answers and the inputs."""

    name: str
    spec: str
    tools: tuple[str, ...]
    answers: tuple[dict[str, Any], ...]
    inputs: dict[str, Any]
    instructions: str | None = None
    adapter: str = "ChatAdapter"
    max_iters: int = 20
    extra: dict[str, Any] = field(default_factory=dict)


CASES: tuple[ReactCase, ...] = (
    ReactCase(
        name="two_tools",
        spec="question -> answer",
        tools=("add", "lookup"),
        answers=(
            {
                "next_thought": "Add first.",
                "next_tool_name": "add",
                "next_tool_args": {"a": 2, "b": 3},
            },
            {
                "next_thought": "Now the country.",
                "next_tool_name": "lookup",
                "next_tool_args": {"city": "Paris"},
            },
            {"next_thought": "I know both.", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "2 + 3 = 5 and Paris is in France.", "answer": "5, France"},
        ),
        inputs={"question": "What is 2 + 3, and which country is Paris in?"},
    ),
    ReactCase(
        name="typed_outputs",
        spec="question, hints: list[str] -> answer: float, confidence: float",
        instructions="Answer the geometry question with the tools.",
        tools=("distance", "search"),
        answers=(
            {
                "next_thought": "Search notes.",
                "next_tool_name": "search",
                "next_tool_args": {"query": "distance"},
            },
            {
                "next_thought": "Compute it.",
                "next_tool_name": "distance",
                "next_tool_args": {"p": {"x": 3, "y": 4}},
            },
            {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "sqrt(9 + 16) = 5", "answer": "5.0", "confidence": "0.9"},
        ),
        inputs={"question": "How far is (3, 4) from the origin?", "hints": ["use distance"]},
    ),
    ReactCase(
        name="json_adapter",
        spec="question -> answer",
        tools=("add",),
        adapter="JSONAdapter",
        answers=(
            {"next_thought": "Add.", "next_tool_name": "add", "next_tool_args": {"a": 1, "b": 1}},
            {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "1 + 1 = 2", "answer": "2"},
        ),
        inputs={"question": "1 + 1?"},
    ),
    ReactCase(
        name="max_iters",
        spec="question -> answer",
        tools=("add",),
        max_iters=1,
        answers=(
            {"next_thought": "Add.", "next_tool_name": "add", "next_tool_args": {"a": 1, "b": 2}},
            {"reasoning": "1 + 2 = 3", "answer": "3"},
        ),
        inputs={"question": "1 + 2?"},
    ),
)


# A predictor with a ``tools: list[Tool]`` input and a ``ToolCalls`` output: how both are
# written into prompts (a demo included), and how answers parse.
TOOLCALLS_TOOLS = ("add", "lookup")
TOOLCALLS_DEMO = {
    "question": "What is 1 + 1?",
    "tool_calls": [{"name": "add", "args": {"a": 1, "b": 1}}],
}
TOOLCALLS_QUESTION = "What is 2 + 3, and where is Paris?"
TOOLCALLS_COMPLETIONS = (
    (
        "ChatAdapter",
        '[[ ## outputs ## ]]\n{"tool_calls": [{"name": "add", "args": {"a": 2, "b": 3}}]}',
    ),
    (
        "ChatAdapter",
        '[[ ## outputs ## ]]\n[{"name": "add", "args": {"a": 2}}, '
        '{"name": "lookup", "args": {"city": "Paris"}}]',
    ),
    (
        "ChatAdapter",
        '[[ ## outputs ## ]]\n{"name": "lookup", "arguments": "{\\"city\\": \\"Paris\\"}"}',
    ),
    (
        "ChatAdapter",
        '[[ ## outputs ## ]]\n{"function": {"name": "add", "arguments": "{\\"a\\": 1}"}, '
        '"id": "call_1"}',
    ),
    ("ChatAdapter", "[[ ## outputs ## ]]\nno tools needed"),
    ("JSONAdapter", '{"outputs": {"tool_calls": [{"name": "add", "args": {"a": 2, "b": 3}}]}}'),
    ("JSONAdapter", '{"outputs": [{"name": "lookup", "args": {"city": "Paris"}}]}'),
)


# A ReAct program saved by DSPy (``save("react.json")``) that dspex loads.
SAVED_REACT_DEMO = {
    "question": "1 + 1?",
    "trajectory": "[[ ## thought_0 ## ]]\nAdd.",
    "next_thought": "Done.",
    "next_tool_name": "finish",
    "next_tool_args": {},
}
SAVED_EXTRACT_INSTRUCTIONS = "Extract the answer from the trajectory."
