"""Programs defined in an importable module, so that another process can rebuild them."""

from __future__ import annotations

import dspex


class ArithmeticQA(dspex.Module):
    """One chain-of-thought step; ``hint`` is an optional input."""

    def __init__(self) -> None:
        super().__init__()
        self.solve = dspex.ChainOfThought("question -> answer: int")

    def forward(self, question: str, hint: str = "") -> dspex.Prediction:
        if hint:
            question = f"{question} (hint: {hint})"
        return self.solve(question=question)


class NeedsArgs(dspex.Module):
    """A program whose constructor needs an argument: it needs a factory ``program_ref``."""

    def __init__(self, signature: str) -> None:
        super().__init__()
        self.predict = dspex.Predict(signature)

    def forward(self, question: str) -> dspex.Prediction:
        return self.predict(question=question)


def make_needs_args() -> NeedsArgs:
    """The zero-argument factory for :class:`NeedsArgs`."""
    return NeedsArgs("question -> answer")


def sim_lm() -> dspex.LM:
    """The simulated arithmetic model, reachable through litellm from any process."""
    return dspex.LM("dspex-sim/arithmetic", temperature=0.0)
