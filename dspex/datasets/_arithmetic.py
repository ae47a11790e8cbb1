"""The bundled ``arithmetic`` task: short word problems with whole-number answers.

Generated from a seeded ``random.Random`` so every machine gets the same rows; the copy in
``datasets/arithmetic.jsonl`` is written by ``python -m dspex.datasets.generate``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from dspex.datasets._task import SimTask

__all__ = ["ARITHMETIC_SIZE", "arithmetic_rows", "build_arithmetic"]

ARITHMETIC_SIZE = 300

# fmt: off
_NAMES = (
    ("Maya", "she"), ("Liam", "he"), ("Noor", "she"), ("Tomas", "he"), ("Aiko", "she"),
    ("Ravi", "he"), ("Elena", "she"), ("Kofi", "he"), ("Ines", "she"), ("Pavel", "he"),
    ("Zara", "she"), ("Hugo", "he"), ("Mei", "she"), ("Omar", "he"), ("Lucia", "she"),
    ("Finn", "he"),
)
_ITEMS = (
    "apples", "marbles", "stickers", "pencils", "cookies", "stamps", "seashells", "books",
    "balloons", "cards", "oranges", "coins", "buttons", "crayons",
)
# fmt: on

Problem = tuple[str, int]
_Template = Callable[[random.Random, str, str, str], Problem]


def _add(r: random.Random, name: str, pron: str, item: str) -> Problem:
    a, b = r.randint(3, 60), r.randint(2, 40)
    return (
        f"{name} has {a} {item} and buys {b} more. How many {item} does {pron} have now?",
        a + b,
    )


def _subtract(r: random.Random, name: str, pron: str, item: str) -> Problem:
    a = r.randint(10, 90)
    b = r.randint(1, a - 1)
    return (
        f"{name} has {a} {item} and gives {b} of them to a friend. "
        f"How many {item} does {pron} have left?",
        a - b,
    )


def _multiply(r: random.Random, name: str, pron: str, item: str) -> Problem:
    a, b = r.randint(2, 12), r.randint(2, 12)
    return (
        f"{name} buys {a} bags of {item} with {b} {item} in each bag. "
        f"How many {item} does {pron} buy in total?",
        a * b,
    )


def _divide(r: random.Random, name: str, pron: str, item: str) -> Problem:
    each, people = r.randint(2, 15), r.randint(2, 9)
    return (
        f"{name} shares {each * people} {item} equally among {people} friends. "
        f"How many {item} does each friend get?",
        each,
    )


def _two_step(r: random.Random, name: str, pron: str, item: str) -> Problem:
    a, b = r.randint(5, 50), r.randint(2, 30)
    c = r.randint(1, a + b - 1)
    return (
        f"{name} has {a} {item}, finds {b} more, and then loses {c}. "
        f"How many {item} does {pron} have now?",
        a + b - c,
    )


def _rows_minus(r: random.Random, name: str, pron: str, item: str) -> Problem:
    rows, per = r.randint(2, 9), r.randint(3, 12)
    gone = r.randint(1, rows * per - 1)
    return (
        f"{name} arranges {item} in {rows} rows of {per}, then removes {gone}. "
        f"How many {item} are still arranged?",
        rows * per - gone,
    )


_TEMPLATES: tuple[_Template, ...] = (_add, _subtract, _multiply, _divide, _two_step, _rows_minus)

HINTS = ("track each quantity", "check the arithmetic", "write the equation")

INSTRUCTIONS = (
    "Answer the question.",
    "Solve the word problem and give the final number.",
    "Read the problem and respond with the answer.",
    "Compute the answer to the math word problem.",
    "Track each quantity as it changes, then give the final count.",
    "Give the numeric answer to the question.",
    "Solve the problem carefully; check the arithmetic before answering.",
    "You are a helpful assistant. Answer the math question.",
    "Figure out how many items there are at the end.",
    "Write the equation that the story describes, solve it, and report the result.",
    "Answer with a single whole number.",
    "Determine the quantity the question asks for.",
    "Work out the result of the story problem.",
    "Track each quantity, check the arithmetic, and answer with the final number.",
    "Respond with the number that answers the question.",
)

SUMMARIES = (
    "The dataset contains short word problems about people and everyday objects; each asks "
    "for a single whole number obtained by adding, subtracting, multiplying or dividing.",
    "Each example is a one- or two-step arithmetic story problem with an integer answer.",
    "The program reads a math word problem and returns a whole-number answer.",
    "Questions describe quantities that change (bought, lost, shared) and ask for the final "
    "count; answers are small non-negative integers.",
)


def arithmetic_rows(size: int = ARITHMETIC_SIZE, seed: int = 20240611) -> list[dict[str, object]]:
    """The task's rows as plain dicts (``question``, ``answer``), unique questions."""
    r = random.Random(seed)
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    while len(rows) < size:
        name, pron = r.choice(_NAMES)
        template = _TEMPLATES[len(rows) % len(_TEMPLATES)]
        question, answer = template(r, name, pron, r.choice(_ITEMS))
        if question in seen:  # the index maps a question to exactly one example
            continue
        seen.add(question)
        rows.append({"question": question, "answer": answer})
    return rows


def build_arithmetic() -> SimTask:
    """The ``arithmetic`` task: 300 word problems, integer answers."""
    return SimTask.from_rows(
        "arithmetic",
        arithmetic_rows(),
        answer_type="int",
        hints=HINTS,
        instruction_pool=INSTRUCTIONS,
        summary_pool=SUMMARIES,
    )
