"""The simulated model on a retrieval task: it knows only what its context holds.

On a task with ``needs_context`` (the bundled ``rag`` task) the gold answer is a made-up name
that appears in exactly one passage of the corpus, so the prompt holds the answer passage
exactly when one of its inputs other than the question holds the answer: then the model
answers right with the task's accuracy for the prompt's features, otherwise it guesses. A
word-boundary match, so that a name inside a longer name does not count, whatever format
the adapter gave the passages (a numbered list, JSON, one string).
"""

from __future__ import annotations

import re
from functools import lru_cache

from dspex.datasets._task import SimTask
from dspex.testing._prompt import ParsedPrompt

__all__ = ["in_context"]


@lru_cache(maxsize=4096)
def _pattern(answer: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(w) for w in answer.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def in_context(task: SimTask, prompt: ParsedPrompt, gold: object) -> bool:
    """Whether the prompt's final inputs, besides the task's own, state ``gold``."""
    pattern = _pattern(str(gold).strip())
    return any(
        pattern.search(str(value))
        for name, value in prompt.inputs.items()
        if name not in task.input_keys
    )
