"""The optimizers users call: ``LabeledFewShot``, ``BootstrapFewShot``, random search.

Each is a small settings object whose ``compile`` runs the optimizer's Prefect flow in this
process (Prefect's ephemeral mode when no server is configured). The flow lives once, in
:mod:`dspex.flows`; this module sits above it in the layers (DESIGN.md) and imports it at the
call site, so ``import dspex`` does not import Prefect.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Never

from dspex.errors import UserError
from dspex.lm import LM
from dspex.optimize._params import (
    BudgetSpec,
    DatasetSpec,
    LMSpec,
    OptimizeParams,
    TrackingSpec,
    check_names,
)
from dspex.optimize._refs import register_object, registration_scope
from dspex.primitives import Example, Module

_log = logging.getLogger("dspex.optimize")

__all__ = [
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "LabeledFewShot",
    "MIPROv2",
    "OptimizationResult",
    "Optimizer",
]


@dataclass(frozen=True)
class OptimizationResult:
    """What a run produced: the winner's state and score, every candidate, where it's logged."""

    program_state: dict[str, Any]
    score: float | None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    model_version: str | None = None
    budget_exhausted: bool = False
    lm_usage: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizationResult:
        fields: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


class Optimizer:
    """Base class. Subclasses set ``name`` and keep their settings as attributes.

    A subclass's ``__init__`` takes ``**unknown: Never`` and passes it to
    :meth:`_reject_unknown` first: a type checker still flags a misspelt keyword, and at run
    time it is an ``UnknownSettingError`` (a ``TypeError`` and a ``ConfigurationError``)
    that names the closest valid keyword, where Python 3.11's own ``TypeError`` does not.
    ``settings()`` returns exactly the keys of the optimizer's model in
    ``dspex.optimize.SETTINGS_MODELS``, which flow parameters and TOML configs are checked
    against.
    """

    name: ClassVar[str]
    # The metric used when none is given: scores evaluations (LabeledFewShot, MIPROv2) or,
    # as in DSPy, passes every bootstrapped trace (BootstrapFewShot, BootstrapFinetune).
    default_metric: ClassVar[str] = "dspex.evaluate:exact_match"

    def __init__(self, metric: Callable[..., Any] | None = None) -> None:
        self.metric = metric
        self.num_threads: int | None = None
        self.last_result: OptimizationResult | None = None

    def get_params(self) -> dict[str, Any]:
        """The optimizer's constructor arguments by name, as DSPy's ``Teleprompter.get_params``
        returns them (its attributes: the metric, LMs and ``teacher_settings`` as given)."""
        params = inspect.signature(type(self).__init__).parameters.values()
        names = [p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def _reject_unknown(self, unknown: Mapping[str, Any]) -> None:
        """Raise ``UnknownSettingError`` (did you mean ...?) for keywords ``__init__`` lacks."""
        if unknown:
            params = inspect.signature(type(self).__init__).parameters.values()
            valid = [p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD]
            check_names(self.name, unknown, valid, what="argument")

    def settings(self) -> dict[str, Any]:
        """The optimizer's settings as JSON values (what the flow receives)."""
        return {}

    def _run_flow(self, params: OptimizeParams) -> dict[str, Any]:
        """Run this optimizer's flow in this process (imported here: it imports Prefect)."""
        from dspex.flows import local

        return local.fewshot(params)

    def compile(
        self,
        program: Module,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
        lm: LM | None = None,
        budget: BudgetSpec | dict[str, Any] | None = None,
        tracking: TrackingSpec | dict[str, Any] | None = None,
        concurrency: int | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
    ) -> Module:
        """Optimize ``program`` on ``trainset`` (scored on ``valset``) and return the winner.

        Runs the optimizer's Prefect flow in this process and logs it to MLflow. Calling it
        again with the same arguments resumes: finished tasks are reused from their persisted
        results and finished LM calls from the LM cache. ``concurrency`` (LM calls in flight)
        defaults to the optimizer's ``num_threads``, then ``dspex.settings.num_threads``,
        then 16.
        """
        if not trainset:
            raise UserError("compile(trainset=...) needs at least one example.")
        if concurrency is None:
            from dspex._settings import current

            concurrency = self.num_threads or current().num_threads or 16
        # The run reaches these objects by reference; they are released when it ends.
        with registration_scope():
            settings = self.settings()
            if teacher is not None:
                settings["teacher"] = register_object(teacher)
            metric = self.metric
            params = OptimizeParams(
                program=register_object(program),
                metric=register_object(metric) if metric is not None else self.default_metric,
                trainset=DatasetSpec(ref=register_object(list(trainset))),
                valset=DatasetSpec(ref=register_object(list(valset))) if valset else None,
                lm=LMSpec(model=lm.model, ref=register_object(lm)) if lm is not None else None,
                optimizer=self.name,
                settings=settings,
                budget=BudgetSpec.model_validate(budget or {}),
                tracking=TrackingSpec.model_validate(tracking or {}),
                concurrency=concurrency,
                runs_dir=str(runs_dir) if runs_dir is not None else None,
            )
            result = OptimizationResult.from_dict(self._run_flow(params))
        self.last_result = result
        winner = program.deepcopy().load_state(result.program_state)
        if lm is not None:
            winner.set_lm(lm, only_unset=True)
        winner._compiled = True  # as DSPy marks it: a parent program keeps it frozen
        return winner


def _teacher_settings(optimizer: str, teacher_settings: Mapping[str, Any] | None) -> None:
    """Check ``teacher_settings`` when the optimizer is built, before any run."""
    from pydantic import ValidationError

    from dspex.errors import UnknownSettingError
    from dspex.optimize._params import SETTINGS_MODELS

    try:
        SETTINGS_MODELS["BootstrapFewShot"].model_validate(
            {"teacher_settings": _teacher_settings_json(teacher_settings, register=False)}
        )
    except ValidationError as e:
        found = (e.errors()[0].get("ctx") or {}).get("error")
        if isinstance(found, UnknownSettingError):
            raise found from None  # its did-you-mean
        why = found if found is not None else e.errors()[0]["msg"]
        raise UserError(f"{optimizer}(teacher_settings=...): {why}") from None


def _teacher_settings_json(
    teacher_settings: Mapping[str, Any] | None, *, register: bool = True
) -> dict[str, Any]:
    """``teacher_settings`` as a flow parameter: a ``dspex.LM`` becomes :class:`LMSpec`
    fields that name it by reference (as ``compile(lm=...)``'s does), a model name a spec."""
    settings = dict(teacher_settings or {})
    lm = settings.get("lm")
    if isinstance(lm, LM):
        ref = register_object(lm) if register else None
        settings["lm"] = LMSpec(model=lm.model, ref=ref).model_dump(exclude_defaults=True)
    elif isinstance(lm, str):
        settings["lm"] = {"model": lm}
    elif isinstance(lm, LMSpec):
        settings["lm"] = lm.model_dump(exclude_defaults=True)
    return settings


class LabeledFewShot(Optimizer):
    """Every predictor gets ``k`` training examples (a seeded sample) as demos."""

    name = "LabeledFewShot"

    def __init__(self, k: int = 16, *, seed: int = 0, **unknown: Never) -> None:
        self._reject_unknown(unknown)
        super().__init__(None)
        self.k = k
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return {"k": self.k, "seed": self.seed}


class BootstrapFewShot(Optimizer):
    """Demos from the teacher's traces that pass the metric, topped up with labeled ones.

    Args:
        metric: ``metric(example, prediction, trace) -> float | bool``; ``None``: every
            trace passes (as in DSPy).
        metric_threshold: a trace passes when ``metric >= threshold``.
        teacher_settings: ``dspex.context`` settings the teacher runs under while
            bootstrapping, e.g. ``{"lm": dspex.LM("openai/gpt-4o")}``; the LM travels to the
            flow by reference, other values must be JSON.
        max_bootstrapped_demos: bootstrapped demos per predictor.
        max_labeled_demos: total demos per predictor, topped up with plain examples.
        max_rounds: attempts per example (later rounds sample afresh).
        max_errors: examples the teacher (or, on a valset, the program) may fail on before
            the run stops with the error; ``None``: ``dspex.settings.max_errors``, else 10
            while bootstrapping and no limit while evaluating.
        seed: seeds the labeled demos (dspex's; DSPy always uses 0).
    """

    name = "BootstrapFewShot"
    default_metric = "dspex.optimize._search:accept_every_trace"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        metric_threshold: float | None = None,
        teacher_settings: dict[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        max_errors: int | None = None,
        *,
        seed: int = 0,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(metric)
        if max_bootstrapped_demos < 0 or max_labeled_demos < 0 or max_rounds < 1:
            raise UserError(
                "Use max_bootstrapped_demos >= 0, max_labeled_demos >= 0, max_rounds >= 1."
            )
        if max_errors is not None and max_errors < 0:
            raise UserError(f"{self.name}(max_errors={max_errors}): use 0 or more, or None.")
        _teacher_settings(self.name, teacher_settings)
        self.metric_threshold = metric_threshold
        self.teacher_settings = {} if teacher_settings is None else teacher_settings
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.max_errors = max_errors
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return {
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "max_rounds": self.max_rounds,
            "metric_threshold": self.metric_threshold,
            "teacher_settings": _teacher_settings_json(self.teacher_settings),
            "max_errors": self.max_errors,
            "seed": self.seed,
        }


class BootstrapFewShotWithRandomSearch(BootstrapFewShot):
    """Scores several candidate demo sets on the valset and keeps the best.

    Candidates, as in DSPy: zero-shot, labeled-only, an unshuffled bootstrap, then
    ``num_candidate_programs`` bootstraps over shuffled trainsets with a random number of
    demos each. Candidates are bootstrapped and evaluated concurrently as Prefect tasks.

    Args:
        num_candidate_programs: shuffled bootstraps tried (DSPy's default, 16).
        num_threads: LM calls in flight (``compile(concurrency=...)`` when not given there).
        stop_at_score: the winner is the best of the candidates up to the first one scoring
            at least this (0-100), as DSPy's early stop returns; the others still run.
        racing: dspex's; ``True`` (the default) races the candidates: all are scored on a
            seeded half of the valset, those statistically behind the leader are dropped
            (the full-valset winner survives with probability ≥ 0.95), the rest are scored
            on all of it. ``False`` scores every candidate on every example, as DSPy does.
            Off when ``stop_at_score`` is set.
        Others: as :class:`BootstrapFewShot`.
    """

    name = "BootstrapFewShotWithRandomSearch"
    default_metric = "dspex.evaluate:exact_match"

    def __init__(
        self,
        metric: Callable[..., Any],
        teacher_settings: dict[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        num_candidate_programs: int = 16,
        num_threads: int | None = None,
        max_errors: int | None = None,
        stop_at_score: float | None = None,
        metric_threshold: float | None = None,
        *,
        seed: int = 0,
        racing: bool = True,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(
            metric,
            metric_threshold=metric_threshold,
            teacher_settings=teacher_settings,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=max_labeled_demos,
            max_rounds=max_rounds,
            max_errors=max_errors,
            seed=seed,
        )
        if num_candidate_programs < 0:
            raise UserError(f"{self.name}(num_candidate_programs=...): use 0 or more.")
        self.num_candidate_programs = num_candidate_programs
        self.num_threads = num_threads
        self.stop_at_score = stop_at_score
        self.racing = racing

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "num_candidate_programs": self.num_candidate_programs,
            "stop_at_score": self.stop_at_score,
            "racing": self.racing,
        }


# MIPROv2 arguments DSPy has that dspex accepts and does not use, and why (get_params() still
# returns them). docs/migrating-from-dspy.md lists them too.
MIPRO_IGNORED = {
    "init_temperature": "proposals are sampled at temperature 1.0 with their own rollout ids",
    "verbose": "progress goes to the 'dspex' loggers, the Prefect UI and MLflow",
    "track_stats": "every trial and full evaluation is logged to MLflow and the Optuna study",
    "log_dir": "runs are kept under compile(runs_dir=...) and in MLflow",
    "program_aware_proposer": "the proposer always sees the program's description",
    "data_aware_proposer": "the proposer always sees the dataset summary",
    "view_data_batch_size": "the dataset summary reads a fixed sample of 20 examples",
    "tip_aware_proposer": "the proposer always samples a tip",
    "fewshot_aware_proposer": "the proposer always sees a demo set",
    "provide_traceback": "failures keep their traceback in the logs and task states",
}


class MIPROv2(Optimizer):
    """Instructions and demos chosen together by Bayesian search over minibatches.

    Stages (each a Prefect task): bootstrap ``num_candidates`` demo sets; summarize the
    dataset and describe the program with the prompt model; propose ``num_candidates - 1``
    grounded instructions per predictor (the original is kept); search with an Optuna TPE
    study (seeded, stored under the runs directory, so a killed run resumes its trials),
    evaluating each trial on a minibatch and, every ``minibatch_full_eval_steps`` trials, the
    best configuration by minibatch mean on the full validation set; the best full score wins.

    DSPy's arguments all work; those in :data:`MIPRO_IGNORED` are accepted and not used.

    Args:
        metric: ``metric(example, prediction, trace) -> float | bool``.
        prompt_model: the LM that writes summaries and proposals (default: the task LM).
        task_model: the LM the program runs on (default: ``compile(lm=...)``/the context).
        teacher_settings, max_errors, metric_threshold: as :class:`BootstrapFewShot`'s, for
            the demo candidates (``max_errors`` bounds evaluations too).
        auto: ``"light"`` (6 candidates, 100 validation examples), ``"medium"`` (12, 300),
            ``"heavy"`` (18, 1000), or ``None`` to set ``num_candidates`` yourself.
        num_threads: LM calls in flight (``compile(concurrency=...)`` when not given there).
        num_trials: Bayesian-search trials (also a ``compile`` argument, as in DSPy); by
            default DSPy's ``max(2·vars·log2(N), 1.5·N)`` with two variables per predictor.
        minibatch_size, minibatch_full_eval_steps: also ``compile`` arguments, as in DSPy.
        trial_batch_size: trials asked, evaluated concurrently and told together.
        seed: seeds bootstrapping, proposals, minibatches and the sampler (0 included;
            dspex's default is 0 where DSPy's is 9).
    """

    name = "MIPROv2"

    def __init__(
        self,
        metric: Callable[..., Any],
        prompt_model: LM | None = None,
        task_model: LM | None = None,
        teacher_settings: dict[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        auto: str | None = "light",
        num_candidates: int | None = None,
        num_threads: int | None = None,
        max_errors: int | None = None,
        seed: int = 0,
        init_temperature: float = 1.0,
        verbose: bool = False,
        track_stats: bool = True,
        log_dir: str | None = None,
        metric_threshold: float | None = None,
        *,
        minibatch_size: int = 35,
        minibatch_full_eval_steps: int = 5,
        num_trials: int | None = None,
        trial_batch_size: int = 4,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(metric)
        from dspex.optimize._mipro import AUTO_PRESETS

        if auto is not None and auto not in AUTO_PRESETS:
            raise UserError(f"MIPROv2(auto={auto!r}): use 'light', 'medium', 'heavy' or None.")
        if auto is None and (num_candidates is None or num_candidates < 2):
            raise UserError("MIPROv2(auto=None) needs num_candidates >= 2.")
        if max_errors is not None and max_errors < 0:
            raise UserError(f"MIPROv2(max_errors={max_errors}): use 0 or more, or None.")
        _teacher_settings(self.name, teacher_settings)
        self.prompt_model = prompt_model
        self.task_model = task_model
        self.teacher_settings = {} if teacher_settings is None else teacher_settings
        self.num_threads = num_threads
        self.init_temperature = init_temperature
        self.verbose = verbose
        self.track_stats = track_stats
        self.log_dir = log_dir
        self.options: dict[str, Any] = {
            "auto": auto,
            "num_candidates": num_candidates,
            "max_bootstrapped_demos": max_bootstrapped_demos,
            "max_labeled_demos": max_labeled_demos,
            "minibatch_size": minibatch_size,
            "minibatch_full_eval_steps": minibatch_full_eval_steps,
            "num_trials": num_trials,
            "trial_batch_size": trial_batch_size,
            "seed": seed,
            "max_errors": max_errors,
            "metric_threshold": metric_threshold,
        }

    def get_params(self) -> dict[str, Any]:
        return {**self.options, **super().get_params()}

    def settings(self) -> dict[str, Any]:
        settings = dict(self.options)
        settings["teacher_settings"] = _teacher_settings_json(self.teacher_settings)
        if self.prompt_model is not None:
            settings["prompt_model"] = register_object(self.prompt_model)
        return settings

    def _run_flow(self, params: OptimizeParams) -> dict[str, Any]:
        from dspex.flows import local

        return local.mipro(params)

    def compile(  # type: ignore[override]  # DSPy's compile arguments, then dspex's
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | None = None,
        valset: Sequence[Example] | None = None,
        num_trials: int | None = None,
        max_bootstrapped_demos: int | None = None,
        max_labeled_demos: int | None = None,
        seed: int | None = None,
        minibatch: bool = True,
        minibatch_size: int | None = None,
        minibatch_full_eval_steps: int | None = None,
        program_aware_proposer: bool = True,
        data_aware_proposer: bool = True,
        view_data_batch_size: int = 10,
        tip_aware_proposer: bool = True,
        fewshot_aware_proposer: bool = True,
        requires_permission_to_run: bool | None = None,
        provide_traceback: bool | None = None,
        **kwargs: Any,
    ) -> Module:
        """DSPy's ``MIPROv2.compile``; its arguments override the constructor's for this
        run. ``kwargs`` are :meth:`Optimizer.compile`'s (``lm``, ``budget``, ...).

        Raises:
            UserError: ``requires_permission_to_run=True`` (DSPy removed the prompt too).
        """
        if requires_permission_to_run:
            raise UserError(
                "MIPROv2.compile(requires_permission_to_run=True): there is no confirmation "
                "prompt (DSPy removed it too); leave the argument out."
            )
        overrides = {
            "num_trials": num_trials,
            "max_bootstrapped_demos": max_bootstrapped_demos,
            "max_labeled_demos": max_labeled_demos,
            "seed": seed,
            "minibatch_size": minibatch_size,
            "minibatch_full_eval_steps": minibatch_full_eval_steps,
        }
        run = copy.copy(self)
        run.options = {**self.options, **{k: v for k, v in overrides.items() if v is not None}}
        if not minibatch:
            run.options["minibatch"] = False
        if kwargs.get("lm") is None and self.task_model is not None:
            kwargs["lm"] = self.task_model
        winner = Optimizer.compile(
            run, student, trainset=trainset, valset=valset, teacher=teacher, **kwargs
        )
        self.last_result = run.last_result
        return winner


class BootstrapFinetune(Optimizer):
    """Distil the program into a finetuned local model: bootstrap traces that pass the metric
    (the program on the teacher LM), train a LoRA adapter per predictor on them, and point
    each predictor at ``local/<target>`` with its adapter.

    Args:
        metric: ``metric(example, prediction, trace)``; only passing traces are trained on
            (``None``: every trace, as in DSPy).
        target: the base model to finetune, a local directory or a Hugging Face hub id;
            ``None`` (DSPy has no such argument): the model of ``compile(lm=...)`` or of the
            context's LM, which must then be a ``local/<model>`` LM.
        train_kwargs: ``dspex.finetune.TrainSettings`` fields (steps, learning rate, LoRA
            rank, device, ...).
        num_threads: LM calls in flight while bootstrapping.
        multitask, adapter, exclude_demos: DSPy's; accepted and not used: dspex trains one
            adapter per predictor (never one shared), formats data with the predictor's own
            adapter, and the finetuned predictors keep no bootstrapped demos.
        max_rounds: bootstrap attempts per training example.
        seed: seeds bootstrapping and training.

    Example:
        >>> import dspex
        >>> from dspex.evaluate import exact_match
        >>> ft = dspex.BootstrapFinetune(exact_match, target="Qwen/Qwen2.5-0.5B-Instruct")
        >>> ft.settings()["target"]
        'Qwen/Qwen2.5-0.5B-Instruct'
    """

    name = "BootstrapFinetune"
    default_metric = "dspex.optimize._search:accept_every_trace"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        multitask: bool = True,
        train_kwargs: dict[str, Any] | None = None,
        adapter: Any = None,
        exclude_demos: bool = False,
        num_threads: int | None = None,
        *,
        target: str | None = None,
        max_rounds: int = 1,
        seed: int = 0,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(metric)
        if target is not None and not target:
            raise UserError("BootstrapFinetune(target=...): a model directory or hub id.")
        from dspex.finetune._train import TrainSettings

        # Unknown keys fail here, before any LM call: first with a did-you-mean.
        check_names(
            self.name,
            train_kwargs or {},
            TrainSettings.__dataclass_fields__,
            what="train_kwargs key",
        )
        TrainSettings.from_dict(train_kwargs)
        self.multitask = multitask
        self.train_kwargs = train_kwargs
        self.adapter = adapter
        self.exclude_demos = exclude_demos
        self.num_threads = num_threads
        self.target = target
        self.max_rounds = max_rounds
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "train_kwargs": dict(self.train_kwargs or {}),
            "max_rounds": self.max_rounds,
            "max_labeled_demos": 0,  # train only on traces that passed the metric
            "seed": self.seed,
        }

    def compile(self, program: Module, **kwargs: Any) -> Module:
        if self.target is None:
            from dspex._settings import current

            lm = kwargs.get("lm") or current().lm
            model = str(getattr(lm, "model", "") or "")
            if not model.startswith("local/"):
                raise UserError(
                    "BootstrapFinetune needs the model to finetune: pass target='<model dir or "
                    f"hub id>', or run it on a local/<model> LM (the LM here is {model!r})."
                )
            run = copy.copy(self)
            run.target = model.removeprefix("local/")
            winner = Optimizer.compile(run, program, **kwargs)
            self.last_result = run.last_result
            return winner
        return super().compile(program, **kwargs)

    def _run_flow(self, params: OptimizeParams) -> dict[str, Any]:
        from dspex.flows import local

        return local.finetune(params)
