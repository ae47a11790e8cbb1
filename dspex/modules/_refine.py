"""``BestOfN`` and ``Refine``: run a module up to ``N`` times and keep the best-rewarded answer.

Every attempt runs a fresh copy of the module with its own rollout id at temperature 1.0 (a
new cache key, hence a fresh sample; a resumed run replays the same attempts from the cache).
Each attempt is one module call in the traces, its LM rows carry the attempt's ``rollout_id``.
``Refine`` also asks the LM for advice after an attempt below the threshold and shows it to
the next attempt's predictors as a ``hint_`` input, with DSPy's prompts.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from dspex._settings import context, current
from dspex.adapters import Adapter, ChatAdapter
from dspex.adapters._format import field_descriptions
from dspex.callbacks import Callback, Span
from dspex.errors import UserError
from dspex.modules._predict import Predict
from dspex.primitives import Example, Module, Prediction, Usage
from dspex.signatures import InputField, OutputField, Signature

__all__ = ["BestOfN", "OfferFeedback", "Refine"]

_log = logging.getLogger("dspex.module")

Reward = Callable[[dict[str, Any], Prediction], float]


# DSPy's instructions for OfferFeedback, byte for byte (its docstring, as cleandoc reads it).
_OFFER_FEEDBACK = (
    "In the discussion, assign blame to each module that contributed to the final reward being "
    "below the threshold, if\nany. Then, prescribe concrete advice of how the module should act "
    "on its future input when we retry the process, if\nit were to receive the same or similar "
    "inputs. If a module is not to blame, the advice should be N/A.\nThe module will not see its "
    "own history, so it needs to rely on entirely concrete and actionable advice from you\nto "
    "avoid the same mistake on the same or similar inputs."
)


class OfferFeedback(Signature):
    __doc__ = _OFFER_FEEDBACK

    program_code: str = InputField(desc="The code of the program that we are analyzing")
    modules_defn: str = InputField(
        desc="The definition of each module in the program, including its I/O"
    )
    program_inputs: str = InputField(desc="The inputs to the program that we are analyzing")
    program_trajectory: str = InputField(
        desc="The trajectory of the program's execution, showing each module's I/O"
    )
    program_outputs: str = InputField(desc="The outputs of the program that we are analyzing")
    reward_code: str = InputField(desc="The code of the reward function that we are analyzing")
    target_threshold: float = InputField(desc="The target threshold for the reward function")
    reward_value: float = InputField(desc="The reward value assigned to the program's outputs")
    module_names: list[str] = InputField(
        desc="The names of the modules in the program, for which we seek advice"
    )
    discussion: str = OutputField(
        desc="Discussing blame of where each module went wrong, if it did"
    )
    advice: dict[str, str] = OutputField(
        # DSPy's description, its missing space ("kind ofscenario") included.
        desc="For each module, describe very concretely, in this order: the specific scenarios in "
        "which it has made mistakes in the past and what each mistake was, followed by what it "
        "should do differently in that kind ofscenario in the future. If the module is not to "
        "blame, write N/A."
    )


HINT_DESC = "A hint to the module from an earlier run"


class BestOfN(Module):
    """Runs ``module`` up to ``N`` times and returns the highest-rewarded prediction, or the
    first whose reward reaches ``threshold`` (DSPy's ``BestOfN``).

    Each attempt calls a copy of the module with a new rollout id at ``temperature=1.0`` (a
    predictor's own ``temperature`` config wins, as in DSPy), so cached answers are not
    replayed across attempts.

    Args:
        module: the program to run.
        N: the most attempts.
        reward_fn: ``reward_fn(inputs: dict, prediction) -> float``.
        threshold: stop at the first attempt whose reward is ``>= threshold``.
        fail_count: attempts that may raise before the call raises too (default ``N``); a
            call where every attempt failed raises the last error.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> lm = DummyLM([{"answer": "Brussels, Belgium"}, {"answer": "Brussels"}])
        >>> qa = dspex.Predict("question -> answer", lm=lm)
        >>> def one_word(args, pred):
        ...     return 1.0 if len(pred.answer.split()) == 1 else 0.0
        >>> best = dspex.BestOfN(qa, N=3, reward_fn=one_word, threshold=1.0)
        >>> best(question="What is the capital of Belgium?").answer
        'Brussels'
    """

    def __init__(
        self,
        module: Module,
        N: int,
        reward_fn: Reward,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        super().__init__()
        _check_args(type(self).__name__, module, N, reward_fn, threshold, fail_count)
        self.module = module
        # A partial, not the function itself: a reward that is a Module (an LM judge) must not
        # become part of this program's learnable tree (DSPy wraps it in a lambda likewise).
        self.reward_fn = functools.partial(reward_fn)
        self.threshold = threshold
        self.N = N
        self.fail_count = N if fail_count is None else fail_count

    def forward(self, **kwargs: Any) -> Prediction:
        run = _Attempts(self, kwargs)
        for idx in range(self.N):
            mod, collector = run.module_for(idx)
            try:
                with context(callbacks=(*current().callbacks, collector)):
                    pred = mod(**kwargs)
                if run.scored(pred, self.reward_fn(dict(kwargs), pred)):
                    break
            except Exception as e:
                run.failed(idx, e)
        return run.result()

    async def aforward(self, **kwargs: Any) -> Prediction:
        run = _Attempts(self, kwargs)
        for idx in range(self.N):
            mod, collector = run.module_for(idx)
            try:
                with context(callbacks=(*current().callbacks, collector)):
                    pred = await mod.acall(**kwargs)
                if run.scored(pred, self.reward_fn(dict(kwargs), pred)):
                    break
            except Exception as e:
                run.failed(idx, e)
        return run.result()


class Refine(BestOfN):
    """Like :class:`BestOfN`, and after each attempt below ``threshold`` the LM reviews the
    attempt (DSPy's ``OfferFeedback`` signature) and writes advice per predictor, which the
    next attempt's predictors receive as an extra ``hint_`` input (DSPy's ``Refine``).

    The advice comes from the configured LM (``dspex.context(lm=...)``), else the module's.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> lm = DummyLM([
        ...     {"answer": "Brussels, Belgium"},
        ...     {"discussion": "too long", "advice": '{"self": "Answer with one word."}'},
        ...     {"answer": "Brussels"},
        ... ])
        >>> qa = dspex.Predict("question -> answer", lm=lm)
        >>> def one_word(args, pred):
        ...     return 1.0 if len(pred.answer.split()) == 1 else 0.0
        >>> refine = dspex.Refine(qa, N=3, reward_fn=one_word, threshold=1.0)
        >>> refine(question="What is the capital of Belgium?").answer
        'Brussels'
    """

    def __init__(
        self,
        module: Module,
        N: int,
        reward_fn: Reward,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        super().__init__(module, N, reward_fn, threshold, fail_count)
        self.module_code = _source(type(module))
        self.reward_fn_code = _source(reward_fn)

    def forward(self, **kwargs: Any) -> Prediction:
        run = _Attempts(self, kwargs)
        for idx in range(self.N):
            mod, collector = run.module_for(idx)
            try:
                with run.attempt_context(mod, collector):
                    pred = mod(**kwargs)
                reward = self.reward_fn(dict(kwargs), pred)
                if run.scored(pred, reward) or idx == self.N - 1:
                    break
                feedback = Predict(OfferFeedback, lm=run.feedback_lm())
                advice = feedback(**self._feedback_inputs(run, mod, collector, pred, reward))
                run.advice = _advice(advice)
            except Exception as e:
                run.failed(idx, e)
        return run.result()

    async def aforward(self, **kwargs: Any) -> Prediction:
        run = _Attempts(self, kwargs)
        for idx in range(self.N):
            mod, collector = run.module_for(idx)
            try:
                with run.attempt_context(mod, collector):
                    pred = await mod.acall(**kwargs)
                reward = self.reward_fn(dict(kwargs), pred)
                if run.scored(pred, reward) or idx == self.N - 1:
                    break
                feedback = Predict(OfferFeedback, lm=run.feedback_lm())
                inputs = self._feedback_inputs(run, mod, collector, pred, reward)
                run.advice = _advice(await feedback.acall(**inputs))
            except Exception as e:
                run.failed(idx, e)
        return run.result()

    def _feedback_inputs(
        self,
        run: _Attempts,
        mod: Module,
        collector: _Trajectory,
        outputs: Prediction,
        reward: float,
    ) -> dict[str, str]:
        """``OfferFeedback``'s inputs, each a string (JSON, indented by 2, when not one)."""
        values: dict[str, Any] = {
            "program_code": self.module_code,
            "modules_defn": inspect_modules(mod),
            "program_inputs": dict(run.kwargs),
            "program_trajectory": collector.steps,
            "program_outputs": _plain(outputs),
            "reward_code": self.reward_fn_code,
            "target_threshold": self.threshold,
            "reward_value": reward,
            "module_names": [name for name, _ in mod.named_predictors()],
        }
        return {k: v if isinstance(v, str) else _dumps(v) for k, v in values.items()}


class _Attempts:
    """The state of one ``BestOfN``/``Refine`` call: the rollouts, the best so far, failures."""

    def __init__(self, owner: BestOfN, kwargs: Mapping[str, Any]) -> None:
        self.owner = owner
        self.kwargs = kwargs
        self.start = _rollout_start(owner.module)
        self.best: Prediction | None = None
        self.best_reward = -float("inf")
        self.failures = 0
        self.last_error: Exception | None = None
        self.advice: dict[str, str] | None = None

    def module_for(self, idx: int) -> tuple[Module, _Trajectory]:
        """A fresh copy of the module whose predictors sample with this attempt's rollout id."""
        mod = self.owner.module.deepcopy()
        rollout_id = self.start + idx
        for p in mod.predictors():
            # DSPy copies the LM with these kwargs; a predictor's own config overrides an LM's
            # kwargs there, so its temperature wins here too. The rollout id is the attempt's.
            p.config = {"temperature": 1.0, **p.config, "rollout_id": rollout_id}
        return mod, _Trajectory(mod)

    def scored(self, pred: Prediction, reward: float) -> bool:
        """Keep ``pred`` when it is the best so far; ``True`` when it reached the threshold."""
        if reward > self.best_reward:
            self.best, self.best_reward = pred, reward
        threshold = self.owner.threshold
        return threshold is not None and reward >= threshold

    def failed(self, idx: int, error: Exception) -> None:
        """Count a failed attempt; raise once more than ``fail_count`` attempts failed."""
        name = type(self.owner).__name__
        _log.warning(
            "%s: attempt %d failed with rollout id %s: %s", name, idx + 1, self.start + idx, error
        )
        self.failures += 1
        self.last_error = error
        if self.failures > self.owner.fail_count:
            raise error

    def result(self) -> Prediction:
        if self.best is None:
            if self.last_error is not None:
                raise self.last_error  # every attempt failed: there is nothing to return
            raise UserError(f"{type(self.owner).__name__}: no attempt produced a prediction.")
        return self.best

    def attempt_context(self, mod: Module, collector: _Trajectory) -> Any:
        """Callbacks with the trajectory collector, and, once there is advice, the hint."""
        settings = current()
        if not self.advice:
            return context(callbacks=(*settings.callbacks, collector))
        names = {p.signature: name for name, p in mod.named_predictors()}
        base = settings.adapter or ChatAdapter()
        return context(
            callbacks=(*settings.callbacks, collector),
            adapter=_HintAdapter(base, self.advice, names),
        )

    def feedback_lm(self) -> Any:
        """The LM that writes advice: the configured one (as DSPy), else the module's."""
        return current().lm or _module_lm(self.owner.module)


class _HintAdapter(Adapter):
    """Calls ``base`` with a ``hint_`` input added: the advice for the calling predictor."""

    def __init__(self, base: Any, advice: Mapping[str, str], names: Mapping[Any, str]) -> None:
        super().__init__()
        self.base = base
        self.advice = advice
        self.names = names

    def _with_hint(self, signature: Any, inputs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        hint = self.advice.get(self.names.get(signature, ""), "N/A")
        return signature.append("hint_", InputField(desc=HINT_DESC)), {**inputs, "hint_": hint}

    async def acall_with_usage(
        self, lm: Any, lm_kwargs: Any, signature: Any, demos: Any, inputs: Any
    ) -> Any:
        sig, with_hint = self._with_hint(signature, inputs)
        call = getattr(self.base, "acall_with_usage", None)
        if call is not None:
            return await call(lm, lm_kwargs, sig, demos, with_hint)
        return await self.base.acall(lm, lm_kwargs, sig, demos, with_hint), Usage()

    async def acall(self, lm: Any, lm_kwargs: Any, signature: Any, demos: Any, inputs: Any) -> Any:
        outputs, _ = await self.acall_with_usage(lm, lm_kwargs, signature, demos, inputs)
        return outputs


class _Trajectory(Callback):
    """Each predictor's inputs and outputs during one attempt (DSPy's ``settings.trace``)."""

    def __init__(self, mod: Module) -> None:
        self.names = {id(p): name for name, p in mod.named_predictors()}
        self.inputs: dict[str, dict[str, Any]] = {}
        self.steps: list[dict[str, Any]] = []

    def on_module_start(self, span: Span, module: Any, inputs: Mapping[str, Any]) -> None:
        if id(module) in self.names:
            self.inputs[span.span_id] = dict(inputs)

    def on_module_end(
        self, span: Span, module: Any, outputs: Any, error: BaseException | None
    ) -> None:
        inputs = self.inputs.pop(span.span_id, None)
        if inputs is not None and error is None and outputs is not None:
            step = {"module_name": self.names[id(module)], "inputs": inputs}
            self.steps.append({**step, "outputs": _plain(outputs)})


def inspect_modules(program: Module) -> str:
    """Each predictor's fields and instructions, as DSPy's ``Refine`` shows them to the LM."""
    separator = "-" * 80
    output = [separator]
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        instructions = textwrap.dedent(signature.instructions)
        instructions = ("\n" + "\t" * 2).join(["", *instructions.splitlines()])
        output.append(f"Module {name}")
        output.append("\n\tInput Fields:")
        inputs = field_descriptions(signature.input_fields).splitlines()
        output.append(("\n" + "\t" * 2).join(["", *inputs]))
        output.append("\tOutput Fields:")
        outputs = field_descriptions(signature.output_fields).splitlines()
        output.append(("\n" + "\t" * 2).join(["", *outputs]))
        output.append(f"\tOriginal Instructions: {instructions}")
        output.append(separator)
    return "\n".join(o.strip("\n") for o in output)


def _check_args(
    name: str, module: Any, n: Any, reward_fn: Any, threshold: Any, fail_count: Any
) -> None:
    if not isinstance(module, Module):
        raise UserError(f"{name}(module=...) needs a dspex.Module, got {type(module).__name__}.")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(f"{name}(N=...) must be an int >= 1 (the most attempts), got {n!r}.")
    if not callable(reward_fn):
        raise UserError(
            f"{name}(reward_fn=...) must be callable as reward_fn(inputs, prediction) -> float."
        )
    if threshold is not None and not isinstance(threshold, int | float):
        raise UserError(f"{name}(threshold=...) must be a number, got {threshold!r}.")
    if fail_count is not None and (not isinstance(fail_count, int) or fail_count < 0):
        raise UserError(f"{name}(fail_count=...) must be an int >= 0 or None, got {fail_count!r}.")


def _module_lm(module: Module) -> Any:
    try:
        return module.get_lm()
    except UserError:  # predictors with different LMs: each keeps its own
        return None


def _rollout_start(module: Module) -> int:
    """DSPy starts from the LM's ``rollout_id`` kwarg (0 when unset)."""
    lm = _module_lm(module) or current().lm
    start = getattr(lm, "kwargs", {}).get("rollout_id") if lm is not None else None
    return start if isinstance(start, int) and not isinstance(start, bool) else 0


def _source(obj: Any) -> str:
    """The source of ``obj`` (of its class for a callable object), as DSPy shows it."""
    for target in (obj, type(obj)):
        try:
            return inspect.getsource(target)
        except (TypeError, OSError):
            continue
    return f"<source of {getattr(obj, '__qualname__', type(obj).__qualname__)} unavailable>"


def _plain(value: Any) -> Any:
    return Example.to_dict(value) if isinstance(value, Example) else value


def _dumps(value: Any) -> str:
    # Values JSON cannot hold become a placeholder, as DSPy's ``recursive_mask`` does.
    return json.dumps(
        value,
        indent=2,
        ensure_ascii=False,
        default=lambda o: f"<non-serializable: {type(o).__name__}>",
    )


def _advice(prediction: Prediction) -> dict[str, str]:
    advice = prediction.advice
    if not isinstance(advice, Mapping):
        raise UserError(f"OfferFeedback returned advice that is not a dict: {advice!r}.")
    return {str(k): str(v) for k, v in advice.items()}
