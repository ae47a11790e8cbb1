"""``Predict``: one LM call that maps a signature's inputs to its typed outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dspex._redact import redact
from dspex._runtime import run_sync
from dspex._settings import current
from dspex.errors import DataError, UserError
from dspex.primitives import Example, Module, Parameter, Prediction
from dspex.signatures import Signature, ensure_signature

if TYPE_CHECKING:
    from dspex.adapters import Adapter
    from dspex.lm import LM

__all__ = ["Predict"]


class Predict(Module, Parameter):
    """The basic predictor. Its ``signature`` (instructions included), ``demos`` and ``lm`` are
    what optimizers tune and what ``save``/``load`` keep.

    Args:
        signature: a ``Signature`` subclass or a string like ``"question -> answer: int"``.
        lm: the LM to call; by default the one in ``dspex.context``/``dspex.configure``.
        adapter: how to render prompts; by default the configured one, else ``ChatAdapter``.
        **config: request parameters for every call (``n``, ``temperature``, ``rollout_id``...).

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> qa = dspex.Predict("question -> answer: int", lm=DummyLM([{"answer": "4"}]))
        >>> qa(question="What is 2 + 2?").answer
        4
    """

    _leaf = True

    def __init__(
        self,
        signature: str | type[Signature],
        *,
        lm: LM | None = None,
        adapter: Adapter | None = None,
        **config: Any,
    ) -> None:
        super().__init__()
        self.signature = ensure_signature(signature)
        self.lm = lm
        self.adapter = adapter
        self.config: dict[str, Any] = dict(config)
        self.demos: list[Example] = []

    def reset(self) -> None:
        """Forget demos (what ``reset_copy`` and optimizers start from)."""
        self.demos = []

    def _inputs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        sig = self.signature
        missing = [n for n in sig.input_fields if n not in kwargs]
        if missing:
            raise DataError(
                f"{sig.__name__}({sig.signature}) is missing input(s) {missing}; "
                f"call it with {', '.join(f'{n}=...' for n in sig.input_fields)}."
            )
        unknown = [n for n in kwargs if n not in sig.input_fields]
        if unknown:
            raise UserError(
                f"{sig.__name__}({sig.signature}) got unexpected argument(s) {unknown}; its "
                f"inputs are {list(sig.input_fields)}."
            )
        return dict(kwargs)

    async def aforward(
        self,
        *,
        lm: LM | None = None,
        config: Mapping[str, Any] | None = None,
        demos: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Prediction:
        inputs = self._inputs(kwargs)
        settings = current()
        lm = lm or self.lm or settings.require_lm()
        from dspex.adapters import ChatAdapter

        adapter = self.adapter or settings.adapter or ChatAdapter()
        completions, usage = await adapter.acall(
            lm,
            {**self.config, **(config or {})},
            self.signature,
            self.demos if demos is None else demos,
            inputs,
        )
        return Prediction.from_completions(completions, usage)

    def forward(self, **kwargs: Any) -> Prediction:
        return run_sync(self.aforward(**kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise UserError(
                f"Predict takes keyword arguments only, e.g. "
                f"predict({', '.join(f'{n}=...' for n in self.signature.input_fields)})."
            )
        return super().__call__(**kwargs)

    # -- state ---------------------------------------------------------------------------
    def dump_predictor_state(self) -> dict[str, Any]:
        return {
            "signature": self.signature.dump_state(),
            "demos": [d.to_dict() if isinstance(d, Example) else dict(d) for d in self.demos],
            "lm": self.lm.dump_config()
            if self.lm is not None and hasattr(self.lm, "dump_config")
            else None,
            "config": redact(self.config),
        }

    def load_predictor_state(self, state: Mapping[str, Any]) -> None:
        self.signature = self.signature.load_state(state.get("signature", {}))
        self.demos = [Example(d) for d in state.get("demos", [])]
        self.config = dict(state.get("config") or {})
        saved_lm = state.get("lm")
        # An LM with a custom transport (a test double, an in-process client) cannot be
        # rebuilt from a file: the predictor keeps the LM it has.
        if saved_lm and saved_lm.get("transport") != "custom":
            from dspex.lm import LM

            self.lm = LM.from_config(saved_lm)

    def __repr__(self) -> str:
        return f"Predict({self.signature.__name__}({self.signature.signature}))"
