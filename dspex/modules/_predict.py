"""``Predict``: one LM call that maps a signature's inputs to its typed outputs."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dspex._redact import is_route_key, redact
from dspex._runtime import run_sync
from dspex._settings import current
from dspex.callbacks import active
from dspex.errors import DataError, UserError
from dspex.primitives import Example, Module, Parameter, Prediction
from dspex.primitives._usage import Usage, record_usage
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
        _check_input_names(self.signature)
        self.lm = lm
        self.adapter = adapter
        self.config: dict[str, Any] = dict(config)
        self.demos: list[Example] = []

    def reset(self) -> None:
        """Forget what was learned and the predictor's own LM, as DSPy's ``reset`` does:
        ``lm``, ``demos``, ``traces`` and ``train``. (``Module.reset_copy`` clears only the
        learned state and keeps each predictor's LM.)"""
        self.lm = None
        self.demos = []
        self.traces: list[Any] = []
        self.train: list[Any] = []

    def update_config(self, **kwargs: Any) -> None:
        """Set default request parameters for this predictor's calls (DSPy's name)."""
        self.config = {**self.config, **kwargs}

    def get_config(self) -> dict[str, Any]:
        """This predictor's default request parameters."""
        return self.config

    def _inputs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's inputs, with defaults filled in. An input may be left out when it has a
        default or its type allows ``None``; any other missing input fails here, before the
        LM is called (DSPy only logs a warning and calls the LM anyway)."""
        sig = self.signature
        if kwargs.keys() == sig.input_fields.keys():
            return dict(kwargs)  # every input given, nothing else: the common case
        missing = [n for n, f in sig.input_fields.items() if n not in kwargs and f.is_required()]
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
        defaults = {
            n: f.default for n, f in sig.input_fields.items() if n not in kwargs and f.has_default
        }
        return {**kwargs, **defaults}

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
        adapter = self.adapter or settings.adapter or _default_adapter()
        # ``acall_with_usage`` where the adapter has it (``acall`` is DSPy's, outputs only).
        call: Any = getattr(adapter, "acall_with_usage", None) or adapter.acall
        completions, usage = await call(
            lm,
            {**self.config, **(config or {})},
            self.signature,
            self.demos if demos is None else demos,
            inputs,
        )
        pred = Prediction.from_completions(completions, usage, signature=self.signature)
        model = str(getattr(lm, "model", type(lm).__name__))
        if isinstance(usage, Usage):
            # ``pred.set_lm_usage({model: usage})``, whose total is ``usage`` itself, which
            # ``from_completions`` has already set: only the per-model record is left to add.
            object.__setattr__(pred, "_lm_usage", {model: usage})
        else:
            pred.set_lm_usage({model: usage})
        record_usage(model, usage)  # to the module calls around this one
        return pred

    def forward(self, **kwargs: Any) -> Prediction:
        return run_sync(self.aforward(**kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise UserError(self._positional_args_message())
        return super().__call__(**kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise UserError(self._positional_args_message())
        if not active():
            # What ``Module.acall`` does for a predictor without callbacks, minus its two
            # coroutine layers (a predictor reports its own usage).
            return await self.aforward(**kwargs)
        return await super().acall(**kwargs)

    def _positional_args_message(self) -> str:
        # DSPy's wording, so code and docs that match on it keep working.
        names = list(self.signature.input_fields)
        example = f"predict({names[0]}=input_value, ...)" if names else "predict()"
        return (
            "Positional arguments are not allowed when calling `dspex.Predict`, must use keyword "
            f"arguments that match your signature input fields: '{', '.join(names)}'. For "
            f"example: `{example}`."
        )

    # -- state ---------------------------------------------------------------------------
    def _rebuild_spec(self) -> tuple[str, dict[str, Any]]:
        return "dspex:Predict", {"signature": typed_spec(self.signature)}

    def dump_predictor_state(self) -> dict[str, Any]:
        return {
            "signature": self.signature.dump_state(),
            "demos": [
                {k: _jsonable(v) for k, v in (d.to_dict() if isinstance(d, Example) else d).items()}
                for d in self.demos
            ],
            "lm": self.lm.dump_config()
            if self.lm is not None and hasattr(self.lm, "dump_config")
            else None,
            "config": redact(self.config),
        }

    def load_predictor_state(self, state: Mapping[str, Any], *, lm: LM | None = None) -> None:
        """Load what :meth:`dump_predictor_state` wrote. With ``lm``, it is this predictor's
        LM; otherwise see :func:`_saved_lm` for how a saved LM config is routed."""
        self.signature = self.signature.load_state(state.get("signature", {}))
        self.demos = [Example(d) for d in state.get("demos", [])]
        # Route keys (headers, ...) in the request parameters stay this process's own.
        own = {k: v for k, v in self.config.items() if is_route_key(k)}
        saved_config, saved_lm = state.get("config") or {}, state.get("lm")
        if not isinstance(saved_config, Mapping) or not isinstance(saved_lm, Mapping | None):
            raise DataError(
                f"Saved state of {self!r}: 'config' must be an object and 'lm' an object or "
                "null; re-save the program with program.save()."
            )
        self.config = {**_without_route(saved_config), **own}
        if lm is not None:
            self.lm = lm
        # An LM with a custom transport (a test double, an in-process client) cannot be
        # rebuilt from a file: the predictor keeps the LM it has.
        elif saved_lm and saved_lm.get("transport") != "custom":
            self.lm = _saved_lm(saved_lm, self.lm or current().lm)

    def __repr__(self) -> str:
        return f"Predict({self.signature.__name__}({self.signature.signature}))"


@functools.cache
def _default_adapter() -> Adapter:
    """The ``ChatAdapter`` of predictors given none (directly or in the settings): one for
    the process (it holds no state), rather than a new one per call."""
    from dspex.adapters import ChatAdapter

    return ChatAdapter()


# Keyword arguments of a call that are not inputs: an input field of the same name could
# never be passed.
_CALL_KEYWORDS = ("lm", "config", "demos")


def _jsonable(value: Any) -> Any:
    """A demo value as JSON, as DSPy's ``dump_state`` writes it: a pydantic model as its JSON
    dump (it comes back as a dict; the adapters format both alike)."""
    if isinstance(value, Example):
        value = value.to_dict()
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def typed_spec(signature: type[Signature]) -> str:
    """``"question: str -> answer: int"``: the string a built-in predictor's signature is
    rebuilt from (instructions and descriptions come back with the saved state)."""

    def side(fields: Mapping[str, Any]) -> str:
        return ", ".join(f"{name}: {f.type_name}" for name, f in fields.items())

    return f"{side(signature.input_fields)} -> {side(signature.output_fields)}"


def _check_input_names(signature: type[Signature]) -> None:
    clash = [n for n in _CALL_KEYWORDS if n in signature.input_fields]
    if clash:
        raise UserError(
            f"Input field(s) {clash} of {signature.__name__} collide with the reserved keyword "
            f"arguments of a predictor call ({', '.join(_CALL_KEYWORDS)}); rename the field(s)."
        )


# What a saved LM config may set when the LM is built afresh (model and operational limits).
_FRESH_KEYS = ("model", "cache", "num_retries", "timeout", "retry_backoff", "history_size")


def _without_route(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if not is_route_key(str(k))}


def _saved_lm(saved: Mapping[str, Any], base: LM | None) -> LM:
    """The LM for a predictor saved with LM config ``saved``: the file gives the model name
    and request parameters; this process gives the endpoint, credentials and transport.

    They come from ``base`` (the predictor's own LM, else the configured one) when it may
    carry ``saved``'s model: it has a custom transport (a test double), an ``api_base`` this
    process chose, or the same provider, whose key it holds. Otherwise the LM is built
    afresh on the provider's default endpoint, so one provider's key never goes to another.
    """
    from dspex.lm import LM

    model = saved.get("model")
    if not isinstance(model, str) or not model:
        raise DataError(f"A saved LM config has no model name: {dict(saved)!r}.")
    if base is not None and not isinstance(base, LM):
        return base  # a duck-typed client: it decides its own route and model
    params = _without_route(saved.get("kwargs") or {})
    try:
        if base is not None and _may_carry(base, model):
            changes = {k: v for k, v in params.items() if base.kwargs.get(k) != v}
            if model == base.model and not changes:
                return base
            return base.copy(model=model, **changes)
        fresh = {k: saved[k] for k in _FRESH_KEYS if k in saved}
        return LM.from_config({**fresh, "kwargs": params})
    except (UserError, TypeError, ValueError) as e:
        raise DataError(f"A saved LM config for {model!r} cannot be rebuilt: {e}") from None


def _may_carry(base: LM, model: str) -> bool:
    custom = base.dump_config()["transport"] == "custom"
    same_provider = base.model.partition("/")[0] == model.partition("/")[0]
    return custom or base.api_base is not None or same_provider
