"""The bundled ``tooluse`` task: questions an agent answers with a calculator and a lookup table.

The lookup table is a catalog of invented products (price in credits, stock in units, weight
in grams), so no model could know a value without calling :func:`lookup`. A third of the
questions need the calculator, a third one lookup, and a third a lookup and then the
calculator on its result. Each row carries its gold ``plan``: the tool calls that answer it,
where ``"{0}"`` in an argument stands for the observation of the first call. The simulated
model (``dspex.testing.SimulatedLM("tooluse")``) follows the plan with a probability that
rises with hints in the instruction and with correct trajectory demos.

The tools and :class:`ToolUseAgent` live here so that another process (a served MLflow model)
imports them by path: tools come from code, never from a file.
"""

from __future__ import annotations

import ast
import operator
import random
from collections.abc import Callable, Mapping
from typing import Any, Literal

from dspex.datasets._task import SimTask
from dspex.modules._react import ReAct

__all__ = [
    "CATALOG",
    "TOOLUSE_SIZE",
    "ToolUseAgent",
    "build_tooluse",
    "calculator",
    "lookup",
    "tooluse_rows",
]

TOOLUSE_SIZE = 240
_SEED = 5113
_N_ITEMS = 48
_MAX_EXPRESSION = 200

Field = Literal["price", "stock", "weight"]
_FIELDS: tuple[Field, ...] = ("price", "stock", "weight")

_ONSETS = ("b", "d", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kl", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "eo")
_ENDINGS = ("ix", "on", "ar", "ette", "ium", "ador", "ulo", "ank")


def _catalog(seed: int) -> dict[str, dict[str, int]]:
    r = random.Random(seed)
    items: dict[str, dict[str, int]] = {}
    while len(items) < _N_ITEMS:
        name = r.choice(_ONSETS) + r.choice(_VOWELS) + r.choice(_ONSETS) + r.choice(_ENDINGS)
        name = name.capitalize()
        if name in items:
            continue
        items[name] = {
            "price": r.randint(4, 95),
            "stock": r.randint(40, 900),
            "weight": r.randint(30, 2000),
        }
    return items


CATALOG: Mapping[str, Mapping[str, int]] = _catalog(_SEED)


# -- the tools ---------------------------------------------------------------------------------
_OPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def calculator(expression: str) -> int:
    """Evaluate an arithmetic expression of whole numbers with +, -, * and parentheses."""
    if len(expression) > _MAX_EXPRESSION:
        raise ValueError(f"the expression is longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    return _evaluate(tree.body)


def _evaluate(node: ast.expr) -> int:
    # Only whole numbers and + - *: nothing here can call, import or allocate without bound.
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    raise ValueError("only whole numbers, +, -, * and parentheses are allowed")


def lookup(item: str, field: Field) -> int:
    """Look up one field of an item in the product catalog: its price (credits), stock (units)
    or weight (grams)."""
    row = CATALOG.get(item.strip())
    if row is None:
        raise KeyError(f"no item named {item!r} in the catalog")
    return row[field]


class ToolUseAgent(ReAct):
    """A ReAct agent for the ``tooluse`` task, with :func:`calculator` and :func:`lookup`.

    Its ``__init__`` takes no arguments, so a saved or registered agent is rebuilt by
    importing this class: the tools come from code, only the prompts from the file.

    Example:
        >>> from dspex.datasets import ToolUseAgent
        >>> [name for name, _ in ToolUseAgent().named_predictors()]
        ['react', 'extract.predict']
    """

    def __init__(self) -> None:
        super().__init__("question -> answer: int", tools=[calculator, lookup], max_iters=4)


# -- the rows ----------------------------------------------------------------------------------
Row = dict[str, Any]
_LOOKUP_QUESTIONS: dict[Field, str] = {
    "price": "What is the price, in credits, of one {item} in the catalog?",
    "stock": "How many {item} units does the catalog have in stock?",
    "weight": "How many grams does one {item} weigh, according to the catalog?",
}
_CHAINED_QUESTIONS: dict[Field, tuple[str, str]] = {
    "price": ("How many credits do {n} {item} units cost?", "{{0}} * {n}"),
    "stock": ("If {n} {item} units are sold, how many are left in stock?", "{{0}} - {n}"),
    "weight": ("How many grams do {n} {item} units weigh together?", "{{0}} * {n}"),
}


def _call(tool: str, **args: str) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def _calc_row(r: random.Random) -> Row:
    a, b, c = r.randint(12, 480), r.randint(3, 60), r.randint(5, 900)
    question, expression = r.choice(
        (
            (f"What is {a} multiplied by {b}?", f"{a} * {b}"),
            (f"What is {a} times {b}, plus {c}?", f"{a} * {b} + {c}"),
            (f"What is {a} plus {c}, minus {b}?", f"{a} + {c} - {b}"),
        )
    )
    return {
        "question": question,
        "answer": calculator(expression),
        "kind": "calculator",
        "plan": [_call("calculator", expression=expression)],
    }


def _lookup_row(r: random.Random, items: list[str]) -> Row:
    item, field = r.choice(items), r.choice(_FIELDS)
    return {
        "question": _LOOKUP_QUESTIONS[field].format(item=item),
        "answer": CATALOG[item][field],
        "kind": "lookup",
        "plan": [_call("lookup", item=item, field=field)],
    }


def _chained_row(r: random.Random, items: list[str]) -> Row:
    item, field = r.choice(items), r.choice(_FIELDS)
    value = CATALOG[item][field]
    n = r.randint(2, 12) if field != "stock" else r.randint(2, value - 1)
    question, template = _CHAINED_QUESTIONS[field]
    expression = template.format(n=n)
    return {
        "question": question.format(n=n, item=item),
        "answer": calculator(expression.format(value)),
        "kind": "lookup+calculator",
        "plan": [
            _call("lookup", item=item, field=field),
            _call("calculator", expression=expression),
        ],
    }


def tooluse_rows(size: int = TOOLUSE_SIZE, seed: int = _SEED) -> list[Row]:
    """The task's rows as plain dicts (``question``, ``answer``, ``kind``, ``plan``), unique
    questions, the three kinds interleaved."""
    r = random.Random(seed)
    items = sorted(CATALOG)
    rows: list[Row] = []
    seen: set[str] = set()
    while len(rows) < size:
        kind = len(rows) % 3
        row = (
            _calc_row(r)
            if kind == 0
            else _lookup_row(r, items)
            if kind == 1
            else _chained_row(r, items)
        )
        if row["question"] in seen:  # the simulator maps a question to exactly one example
            continue
        seen.add(row["question"])
        rows.append(row)
    return rows


HINTS = ("exact item name", "calculator for every", "one tool call at a time")

INSTRUCTIONS = (
    "Answer the question.",
    "Use the tools to answer the question with a whole number.",
    "Answer the question about the product catalog.",
    "Look up what you need, then answer with a whole number.",
    "Make one tool call at a time: look up catalog values with the exact item name, then use "
    "the calculator for every computation.",
    "You are a helpful shopping assistant. Answer the question.",
    "Find the number the question asks for.",
    "Use the calculator for every computation instead of doing arithmetic in your head.",
    "Answer concisely with the final number.",
    "Think about which tool helps, then answer.",
    "Pass the exact item name to the lookup tool and report the value it returns.",
    "Work out the answer step by step.",
    "Respond with the number that answers the question.",
    "Gather the facts you need and give the final count.",
)

SUMMARIES = (
    "Questions about an invented product catalog (prices, stock, weights) and plain "
    "arithmetic; every answer is a whole number obtained with a lookup tool and a calculator.",
    "Each example needs one or two tool calls: a catalog lookup, a calculation, or a lookup "
    "followed by a calculation on its result.",
    "The program is an agent that calls a calculator and a catalog lookup tool and answers "
    "with an integer.",
    "Questions name an item of a fictional catalog or give numbers to combine; answers are "
    "integers.",
)


def build_tooluse() -> SimTask:
    """The ``tooluse`` task: 240 questions needing a calculator and a catalog lookup."""
    return SimTask.from_rows(
        "tooluse",
        tooluse_rows(),
        answer_type="int",
        hints=HINTS,
        instruction_pool=INSTRUCTIONS,
        summary_pool=SUMMARIES,
        plan_key="plan",
        base_accuracy=0.45,
        hint_bonus=0.25,
        demo_bonus=0.08,
        reasoning_bonus=0.0,
    )
