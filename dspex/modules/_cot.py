"""``ChainOfThought``: a predictor that writes its reasoning before its answer."""

from __future__ import annotations

from typing import Any

from dspex.modules._predict import Predict, typed_spec
from dspex.primitives import Module, Prediction
from dspex.signatures import OutputField, Signature, ensure_signature

__all__ = ["ChainOfThought"]

# DSPy's placeholder description: prompts show no description for the field, as DSPy's do.
REASONING_DESC = "${reasoning}"


class ChainOfThought(Module):
    """Adds a ``reasoning`` output before the signature's outputs.

    Example:
        >>> import dspex
        >>> cot = dspex.ChainOfThought("question -> answer")
        >>> cot.predict.signature.signature
        'question -> reasoning, answer'
    """

    def __init__(
        self, signature: str | type[Signature], *, rationale_desc: str = REASONING_DESC, **kw: Any
    ) -> None:
        super().__init__()
        sig = ensure_signature(signature)
        extended = sig.prepend("reasoning", OutputField(desc=rationale_desc), str)
        self.predict = Predict(extended, **kw)

    def _rebuild_spec(self) -> tuple[str, dict[str, Any]]:
        sig = self.predict.signature
        if "reasoning" in sig.output_fields:
            sig = sig.delete("reasoning")
        return "dspex:ChainOfThought", {"signature": typed_spec(sig)}

    async def aforward(self, **kwargs: Any) -> Prediction:
        return await self.predict.acall(**kwargs)

    def forward(self, **kwargs: Any) -> Prediction:
        return self.predict(**kwargs)
