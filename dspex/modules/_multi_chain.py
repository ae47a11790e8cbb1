"""``MultiChainComparison``: one LM call that compares ``M`` reasoning attempts and answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dspex.errors import UserError
from dspex.modules._predict import Predict
from dspex.primitives import Module, Prediction
from dspex.signatures import InputField, OutputField, Signature, ensure_signature

__all__ = ["MultiChainComparison"]


class MultiChainComparison(Module):
    """Shows ``M`` earlier attempts (each a rationale and an answer) to the LM, which writes a
    corrected ``rationale`` and the final outputs (DSPy's ``MultiChainComparison``).

    Args:
        signature: the task's signature; its last output field is the compared answer.
        M: how many attempts each call receives.
        temperature: the predictor's sampling temperature.
        **config: more request parameters for the predictor.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> lm = DummyLM([{"rationale": "two of three say 4", "answer": "4"}])
        >>> compare = dspex.MultiChainComparison("question -> answer", M=3, lm=lm)
        >>> attempts = [
        ...     {"reasoning": "2 + 2 is 4", "answer": "4"},
        ...     {"reasoning": "2 + 2 is 5", "answer": "5"},
        ...     {"reasoning": "two and two make 4", "answer": "4"},
        ... ]
        >>> compare(completions=attempts, question="2 + 2?").answer
        '4'
    """

    def __init__(
        self,
        signature: str | type[Signature],
        M: int = 3,
        temperature: float = 0.7,
        **config: Any,
    ) -> None:
        super().__init__()
        if not isinstance(M, int) or isinstance(M, bool) or M < 1:
            raise UserError(f"MultiChainComparison(M=...) must be an int >= 1, got {M!r}.")
        self.M = M
        sig = ensure_signature(signature)
        if not sig.output_fields:
            raise UserError(f"MultiChainComparison needs an output field in {sig.signature!r}.")
        *_, self.last_key = sig.output_fields
        for idx in range(M):
            sig = sig.append(
                f"reasoning_attempt_{idx + 1}",
                InputField(prefix=f"Student Attempt #{idx + 1}:", desc="${reasoning attempt}"),
            )
        sig = sig.prepend(
            "rationale",
            OutputField(
                prefix="Accurate Reasoning: Thank you everyone. Let's now holistically",
                desc="${corrected reasoning}",
            ),
        )
        self.predict = Predict(sig, temperature=temperature, **config)

    def _attempts(self, completions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """The ``reasoning_attempt_i`` inputs: each attempt's first lines, as DSPy writes them."""
        if len(completions) != self.M:
            raise UserError(
                f"The number of attempts ({len(completions)}) doesn't match the expected number "
                f"M ({self.M}). Please set the correct value for M when initializing "
                "MultiChainComparison."
            )
        attempts = {}
        for idx, c in enumerate(completions):
            rationale = c.get("rationale", c.get("reasoning"))
            if rationale is None or self.last_key not in c:
                raise UserError(
                    f"MultiChainComparison: attempt {idx + 1} needs a 'rationale' (or "
                    f"'reasoning') and a {self.last_key!r}; it has {sorted(c)}."
                )
            rationale = str(rationale).strip().split("\n")[0].strip()
            answer = str(c[self.last_key]).strip().split("\n")[0].strip()
            attempts[f"reasoning_attempt_{idx + 1}"] = (
                f"«I'm trying to {rationale} I'm not sure but my prediction is {answer}»"
            )
        return attempts

    def forward(  # type: ignore[override]
        self, completions: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> Prediction:
        return self.predict(**{**self._attempts(completions), **kwargs})

    async def aforward(  # type: ignore[override]
        self, completions: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> Prediction:
        return await self.predict.acall(**{**self._attempts(completions), **kwargs})
