"""``SimTask``: a bundled task with gold answers and the knobs of the simulated model.

A task is data (examples with gold answers) plus what ``dspex.testing.SimulatedLM`` needs to
behave like a hosted model on it: the phrases that make an instruction "good" (hints), the
instructions an optimizer's proposer can suggest, and how much each prompt feature raises the
probability of a correct answer.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, NamedTuple

from dspex.errors import UserError
from dspex.primitives._example import Example

__all__ = ["SimTask", "TaskSplits", "load_task", "task_names"]

AnswerType = Literal["int", "str"]


class TaskSplits(NamedTuple):
    """Disjoint train/dev/test lists of examples, from :meth:`SimTask.split`."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]


@dataclass(frozen=True)
class SimTask:
    """A task with gold outputs, hint phrases and the accuracy model of the simulated LM.

    The simulated model answers an example correctly with probability :meth:`accuracy`::

        base_accuracy
        + hint_bonus          if the instruction contains one of ``hints``
        + demo_bonus          per correct demo, for at most ``demo_cap`` demos
        - wrong_demo_penalty  per wrong demo
        + reasoning_bonus     if a reasoning field is requested before the answer

    clipped to ``[0.02, max_accuracy]``. ``prompt_jitter`` adds a small per-prompt offset so
    two prompts with the same features still score a little differently, as with a real model.

    Attributes:
        name: the task's name (``"arithmetic"``, ``"factqa"``, or your own).
        examples: every example, with ``input_keys`` declared as inputs.
        input_keys: the input fields.
        answer_key: the field holding the gold answer.
        answer_type: ``"int"`` (wrong answers are gold ± a small delta) or ``"str"`` (wrong
            answers are other gold answers of the same ``distractor_key`` group).
        hints: phrases that make an instruction good (matched case-insensitively).
        instruction_pool: candidate instructions a proposer may return; some contain hints.
        summary_pool: texts returned for fields named like ``summary`` or ``description``.
        distractor_key: the field grouping string answers by kind (capitals, founders, ...).
        plan_key: for a tool-use task, the field holding each example's gold tool calls
            (``[{"tool": ..., "args": {...}}, ...]``; ``"{0}"`` in an argument stands for the
            first call's observation). The simulated model then acts as a ReAct agent: each
            step makes the planned call with :meth:`accuracy`'s probability (counting correct
            trajectory demos), and the answer is right only when the trajectory holds it.
        corpus: for a retrieval task, the passages its questions are answered from
            (``{"id", "title", "text"}`` each); ``datasets/<name>_corpus.jsonl`` holds a copy.
        needs_context: for a retrieval task: the simulated model answers right with
            :meth:`accuracy`'s probability only when the gold answer is in the prompt's
            other inputs (the passage that states it was retrieved), and with
            ``closed_book_accuracy`` (a lucky guess) otherwise.
        closed_book_accuracy: see ``needs_context``.

    Example:
        >>> from dspex.datasets import load_task
        >>> task = load_task("arithmetic")
        >>> train, dev, test = task.split(train=50, dev=100, seed=0)
        >>> len(train), len(dev), task.answer_key
        (50, 100, 'answer')
        >>> task.accuracy(hint=True, correct_demos=2, reasoning=False)
        0.72
    """

    name: str
    examples: tuple[Example, ...]
    input_keys: tuple[str, ...]
    answer_key: str
    answer_type: AnswerType
    hints: tuple[str, ...]
    instruction_pool: tuple[str, ...]
    summary_pool: tuple[str, ...]
    distractor_key: str | None = None
    plan_key: str | None = None
    corpus: tuple[Mapping[str, str], ...] = ()
    needs_context: bool = False
    closed_book_accuracy: float = 0.05
    base_accuracy: float = 0.35
    hint_bonus: float = 0.25
    demo_bonus: float = 0.06
    demo_cap: int = 4
    wrong_demo_penalty: float = 0.03
    reasoning_bonus: float = 0.12
    prompt_jitter: float = 0.04
    max_accuracy: float = 0.95

    def __post_init__(self) -> None:
        if not self.examples:
            raise UserError(f"SimTask {self.name!r} has no examples.")
        if not self.instruction_pool:
            raise UserError(f"SimTask {self.name!r} needs at least one instruction in the pool.")
        for i, ex in enumerate(self.examples):
            if ex.input_keys is None or self.answer_key not in ex:
                raise UserError(
                    f"SimTask {self.name!r}: example {i} must declare inputs "
                    f"(ex.with_inputs(...)) and carry the answer field {self.answer_key!r}."
                )

    @classmethod
    def from_rows(
        cls,
        name: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        answer_type: AnswerType,
        hints: tuple[str, ...],
        instruction_pool: tuple[str, ...],
        summary_pool: tuple[str, ...],
        **params: Any,
    ) -> SimTask:
        """A task of ``question`` -> ``answer`` rows (other fields kept as labels); ``params``
        are the other :class:`SimTask` fields (accuracy knobs, ``distractor_key``, ...)."""
        return cls(
            name=name,
            examples=tuple(Example(dict(row)).with_inputs("question") for row in rows),
            input_keys=("question",),
            answer_key="answer",
            answer_type=answer_type,
            hints=hints,
            instruction_pool=instruction_pool,
            summary_pool=summary_pool,
            **params,
        )

    def accuracy(
        self, *, hint: bool, correct_demos: int, reasoning: bool, wrong_demos: int = 0
    ) -> float:
        """The probability of a correct answer for a prompt with these features (no jitter)."""
        p = self.base_accuracy
        p += self.hint_bonus if hint else 0.0
        p += self.demo_bonus * min(max(correct_demos, 0), self.demo_cap)
        p -= self.wrong_demo_penalty * max(wrong_demos, 0)
        p += self.reasoning_bonus if reasoning else 0.0
        return round(min(max(p, 0.02), self.max_accuracy), 6)

    def has_hint(self, instruction: str) -> bool:
        """Whether ``instruction`` contains one of the task's hint phrases."""
        low = instruction.lower()
        return any(h.lower() in low for h in self.hints)

    def split(
        self, train: int = 100, dev: int = 100, test: int | None = None, *, seed: int = 0
    ) -> TaskSplits:
        """Disjoint, deterministic train/dev/test splits.

        Args:
            train: number of training examples.
            dev: number of development examples.
            test: number of test examples; ``None`` takes all the rest.
            seed: the shuffle seed; the same seed always gives the same splits.

        Raises:
            UserError: when the sizes add up to more than the task has.
        """
        total = len(self.examples)
        want = train + dev + (test or 0)
        if min(train, dev, test or 0) < 0 or want > total:
            raise UserError(
                f"split(train={train}, dev={dev}, test={test}) asks for {want} examples but "
                f"task {self.name!r} has {total}; ask for fewer."
            )
        order = list(range(total))
        random.Random(f"{self.name}:{seed}").shuffle(order)
        rows = [self.examples[i] for i in order]
        end_test = train + dev + test if test is not None else total
        return TaskSplits(rows[:train], rows[train : train + dev], rows[train + dev : end_test])

    def with_params(self, **changes: object) -> SimTask:
        """A copy with some fields changed, e.g. ``task.with_params(hint_bonus=0.4)``."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _builders() -> dict[str, Callable[[], SimTask]]:
    # Imported here: the generators are only needed when a task is loaded.
    from dspex.datasets._arithmetic import build_arithmetic
    from dspex.datasets._factqa import build_factqa
    from dspex.datasets._rag import build_rag
    from dspex.datasets._tooluse import build_tooluse

    return {
        "arithmetic": build_arithmetic,
        "factqa": build_factqa,
        "rag": build_rag,
        "tooluse": build_tooluse,
    }


def task_names() -> list[str]:
    """The names :func:`load_task` accepts."""
    return sorted(_builders())


@cache
def load_task(name: str) -> SimTask:
    """Load a bundled task by name; generated deterministically, identical on every machine.

    Example:
        >>> from dspex.datasets import load_task
        >>> ex = load_task("factqa").examples[0]
        >>> sorted(ex.inputs().keys())
        ['question']

    Raises:
        UserError: for an unknown name.
    """
    builders = _builders()
    if name not in builders:
        raise UserError(f"Unknown task {name!r}; bundled tasks are {sorted(builders)}.")
    return builders[name]()
