"""The programs of ``benchmarks/dspy_saved_programs.py``, written against dspex.

DSPy saved them (``tests/compat/dspy_saved/*.json``); these classes have the same structure,
so the saved state loads into them. Keep the two in step.
"""

from __future__ import annotations

from typing import Any, Literal

import dspex


class QA(dspex.Signature):
    """Answer the trivia question with a short phrase."""

    question: str = dspex.InputField(desc="a trivia question")
    answer: str = dspex.OutputField(desc="a short answer")


class Classify(dspex.Signature):
    """Classify the sentiment of a review."""

    review: str = dspex.InputField()
    sentiment: Literal["positive", "negative", "neutral"] = dspex.OutputField()
    confidence: float = dspex.OutputField(desc="between 0 and 1")


class DraftThenAnswer(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspex.ChainOfThought("question -> draft")
        self.answer = dspex.Predict("question, draft -> answer: int")
        self.checks = [dspex.Predict("answer -> ok: bool"), dspex.Predict("question -> topic")]

    def forward(self, question: str) -> Any:
        draft = self.draft(question=question).draft
        return self.answer(question=question, draft=draft)


PROGRAMS = {
    "predict_qa": lambda: dspex.Predict("question -> answer"),
    "cot_qa": lambda: dspex.ChainOfThought(QA),
    "classify": lambda: dspex.Predict(Classify),
    "draft_then_answer": DraftThenAnswer,
}
