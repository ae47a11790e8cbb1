"""Programs saved by DSPy, as fixtures for dspex's loader (``tests/compat/test_dspy_saved.py``).

Run with the benchmark virtualenv (DSPy is a benchmark-only dependency, see README.md):

    .venv-bench/bin/python benchmarks/dspy_saved_programs.py

For each program below it writes, under ``tests/compat/dspy_saved/``:

- ``<name>.json``: what ``program.save("<name>.json")`` wrote (DSPy's own format);
- ``<name>.prompts.json``: for each named predictor, after ``program.load(...)`` into a fresh
  instance, the messages ``dspy.ChatAdapter().format(...)`` builds for the inputs listed in
  ``INPUTS`` (no LM is called), so the test can check dspex builds the same prompts.

The program classes are restated in ``tests/compat/dspy_programs.py`` against ``dspex``; keep
the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import dspy

OUT = Path(__file__).parents[1] / "tests" / "compat" / "dspy_saved"


class QA(dspy.Signature):
    """Answer the trivia question with a short phrase."""

    question: str = dspy.InputField(desc="a trivia question")
    answer: str = dspy.OutputField(desc="a short answer")


class Classify(dspy.Signature):
    """Classify the sentiment of a review."""

    review: str = dspy.InputField()
    sentiment: Literal["positive", "negative", "neutral"] = dspy.OutputField()
    confidence: float = dspy.OutputField(desc="between 0 and 1")


class DraftThenAnswer(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.ChainOfThought("question -> draft")
        self.answer = dspy.Predict("question, draft -> answer: int")
        self.checks = [dspy.Predict("answer -> ok: bool"), dspy.Predict("question -> topic")]

    def forward(self, question: str) -> Any:
        draft = self.draft(question=question).draft
        return self.answer(question=question, draft=draft)


def predict_qa() -> dspy.Module:
    program = dspy.Predict("question -> answer")
    program.signature = program.signature.with_instructions("Answer in one word.")
    program.demos = [
        dspy.Example(question="Capital of France?", answer="Paris").with_inputs("question"),
        dspy.Example(question="Color of the sky?", answer="Blue").with_inputs("question"),
    ]
    return program


def cot_qa() -> dspy.Module:
    program = dspy.ChainOfThought(QA)
    program.predict.demos = [
        dspy.Example(
            question="2+2?", reasoning="Two plus two is four.", answer="4", augmented=True
        ).with_inputs("question"),
        dspy.Example(question="Largest planet?", answer="Jupiter").with_inputs("question"),
    ]
    # The endpoint must never be taken from the file by dspex (only the model and settings).
    program.predict.lm = dspy.LM(
        "openai/gpt-4o-mini", temperature=0.3, max_tokens=300, api_base="http://10.9.9.9:1/v1"
    )
    return program


def classify() -> dspy.Module:
    program = dspy.Predict(Classify)
    program.demos = [
        dspy.Example(review="Loved it.", sentiment="positive", confidence=0.9).with_inputs("review")
    ]
    return program


def draft_then_answer() -> dspy.Module:
    program = DraftThenAnswer()
    program.draft.predict.signature = program.draft.predict.signature.with_instructions(
        "Write a rough draft of the answer first."
    )
    program.answer.demos = [
        dspy.Example(question="3 apples and 2 more?", draft="3+2", answer=5).with_inputs(
            "question", "draft"
        )
    ]
    program.checks[0].demos = [dspy.Example(answer="5", ok=True).with_inputs("answer")]
    return program


PROGRAMS = {
    "predict_qa": (predict_qa, lambda: dspy.Predict("question -> answer")),
    "cot_qa": (cot_qa, lambda: dspy.ChainOfThought(QA)),
    "classify": (classify, lambda: dspy.Predict(Classify)),
    "draft_then_answer": (draft_then_answer, DraftThenAnswer),
}

INPUTS: dict[str, dict[str, Any]] = {
    "self": {"question": "Who wrote Hamlet?"},  # a bare predictor names itself "self"
    "predict": {"question": "Who wrote Hamlet?"},
    "draft.predict": {"question": "7 times 6?"},
    "answer": {"question": "7 times 6?", "draft": "7*6"},
    "checks[0]": {"answer": "42"},
    "checks[1]": {"question": "7 times 6?"},
}
CLASSIFY_INPUTS = {"review": "It broke after a day."}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (build, fresh) in PROGRAMS.items():
        path = OUT / f"{name}.json"
        build().save(str(path))
        loaded = fresh()
        loaded.load(str(path))
        prompts = {}
        for predictor_name, predictor in loaded.named_predictors():
            inputs = CLASSIFY_INPUTS if name == "classify" else INPUTS[predictor_name]
            prompts[predictor_name] = {
                "inputs": inputs,
                "messages": dspy.ChatAdapter().format(predictor.signature, predictor.demos, inputs),
            }
        (OUT / f"{name}.prompts.json").write_text(json.dumps(prompts, indent=2) + "\n")
        print(f"wrote {path.name} ({', '.join(prompts)})")


if __name__ == "__main__":
    main()
