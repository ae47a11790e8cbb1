"""The optimizers users call: ``LabeledFewShot``, ``BootstrapFewShot``, random search.

Each is a small settings object whose ``compile`` runs the optimizer's Prefect flow in this
process (Prefect's ephemeral mode when no server is configured). The flow lives once, in
:mod:`dspex.flows`; this module sits above it in the layers (DESIGN.md) and imports it at the
call site, so ``import dspex`` does not import Prefect.
"""

from __future__ import annotations

import inspect
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

    def __init__(self, metric: Callable[..., Any] | None = None) -> None:
        self.metric = metric
        self.last_result: OptimizationResult | None = None

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
        concurrency: int = 16,
        runs_dir: str | os.PathLike[str] | None = None,
    ) -> Module:
        """Optimize ``program`` on ``trainset`` (scored on ``valset``) and return the winner.

        Runs the optimizer's Prefect flow in this process and logs it to MLflow. Calling it
        again with the same arguments resumes: finished tasks are reused from their persisted
        results and finished LM calls from the LM cache.
        """
        if not trainset:
            raise UserError("compile(trainset=...) needs at least one example.")
        # The run reaches these objects by reference; they are released when it ends.
        with registration_scope():
            settings = self.settings()
            if teacher is not None:
                settings["teacher"] = register_object(teacher)
            metric = self.metric
            params = OptimizeParams(
                program=register_object(program),
                metric=(
                    register_object(metric) if metric is not None else "dspex.evaluate:exact_match"
                ),
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
        return winner


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
        metric: ``metric(example, prediction, trace) -> float | bool``.
        max_bootstrapped_demos: bootstrapped demos per predictor.
        max_labeled_demos: total demos per predictor, topped up with plain examples.
        max_rounds: attempts per example (later rounds sample afresh).
        metric_threshold: a trace passes when ``metric >= threshold``.
    """

    name = "BootstrapFewShot"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        metric_threshold: float | None = None,
        seed: int = 0,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(metric)
        if max_bootstrapped_demos < 0 or max_labeled_demos < 0 or max_rounds < 1:
            raise UserError(
                "Use max_bootstrapped_demos >= 0, max_labeled_demos >= 0, max_rounds >= 1."
            )
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.metric_threshold = metric_threshold
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return {
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "max_rounds": self.max_rounds,
            "metric_threshold": self.metric_threshold,
            "seed": self.seed,
        }


class BootstrapFewShotWithRandomSearch(BootstrapFewShot):
    """Scores several candidate demo sets on the valset and keeps the best.

    Candidates, as in DSPy: zero-shot, labeled-only, an unshuffled bootstrap, then
    ``num_candidate_programs`` bootstraps over shuffled trainsets with a random number of
    demos each. Candidates are bootstrapped and evaluated concurrently as Prefect tasks.
    """

    name = "BootstrapFewShotWithRandomSearch"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        num_candidate_programs: int = 8,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        metric_threshold: float | None = None,
        seed: int = 0,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(
            metric,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=max_labeled_demos,
            max_rounds=max_rounds,
            metric_threshold=metric_threshold,
            seed=seed,
        )
        self.num_candidate_programs = num_candidate_programs

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "num_candidate_programs": self.num_candidate_programs}


class MIPROv2(Optimizer):
    """Instructions and demos chosen together by Bayesian search over minibatches.

    Stages (each a Prefect task): bootstrap ``num_candidates`` demo sets; summarize the
    dataset and describe the program with the prompt model; propose ``num_candidates - 1``
    grounded instructions per predictor (the original is kept); search with an Optuna TPE
    study (seeded, stored under the runs directory, so a killed run resumes its trials),
    evaluating each trial on a minibatch and, every ``minibatch_full_eval_steps`` trials, the
    best configuration by minibatch mean on the full validation set; the best full score wins.

    Args:
        metric: ``metric(example, prediction, trace) -> float | bool``.
        prompt_model: the LM that writes summaries and proposals (default: the task LM).
        task_model: the LM the program runs on (default: ``compile(lm=...)``/the context).
        auto: ``"light"`` (6 candidates, 100 validation examples), ``"medium"`` (12, 300),
            ``"heavy"`` (18, 1000), or ``None`` to set ``num_candidates`` yourself.
        num_trials: Bayesian-search trials; by default DSPy's
            ``max(2·vars·log2(N), 1.5·N)`` with two variables per predictor.
        trial_batch_size: trials asked, evaluated concurrently and told together.
        seed: seeds bootstrapping, proposals, minibatches and the sampler (0 included).
    """

    name = "MIPROv2"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        prompt_model: LM | None = None,
        task_model: LM | None = None,
        auto: str | None = "light",
        num_candidates: int | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        minibatch_size: int = 35,
        minibatch_full_eval_steps: int = 5,
        num_trials: int | None = None,
        trial_batch_size: int = 4,
        seed: int = 0,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(metric)
        from dspex.optimize._mipro import AUTO_PRESETS

        if auto is not None and auto not in AUTO_PRESETS:
            raise UserError(f"MIPROv2(auto={auto!r}): use 'light', 'medium', 'heavy' or None.")
        if auto is None and (num_candidates is None or num_candidates < 2):
            raise UserError("MIPROv2(auto=None) needs num_candidates >= 2.")
        self.prompt_model = prompt_model
        self.task_model = task_model
        self.options = {
            "auto": auto,
            "num_candidates": num_candidates,
            "max_bootstrapped_demos": max_bootstrapped_demos,
            "max_labeled_demos": max_labeled_demos,
            "minibatch_size": minibatch_size,
            "minibatch_full_eval_steps": minibatch_full_eval_steps,
            "num_trials": num_trials,
            "trial_batch_size": trial_batch_size,
            "seed": seed,
        }

    def settings(self) -> dict[str, Any]:
        settings = dict(self.options)
        if self.prompt_model is not None:
            settings["prompt_model"] = register_object(self.prompt_model)
        return settings

    def _run_flow(self, params: OptimizeParams) -> dict[str, Any]:
        from dspex.flows import local

        return local.mipro(params)

    def compile(self, program: Module, **kwargs: Any) -> Module:
        if kwargs.get("lm") is None and self.task_model is not None:
            kwargs["lm"] = self.task_model
        return super().compile(program, **kwargs)


class BootstrapFinetune(Optimizer):
    """Distil the program into a finetuned local model: bootstrap traces that pass the metric
    (the program on the teacher LM), train a LoRA adapter per predictor on them, and point
    each predictor at ``local/<target>`` with its adapter.

    Args:
        metric: ``metric(example, prediction, trace)``; only passing traces are trained on.
        target: the base model to finetune, a local directory or a Hugging Face hub id.
        train_kwargs: ``dspex.finetune.TrainSettings`` fields (steps, learning rate, LoRA
            rank, device, ...).
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

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        target: str,
        train_kwargs: dict[str, Any] | None = None,
        max_rounds: int = 1,
        seed: int = 0,
        **unknown: Never,
    ) -> None:
        self._reject_unknown(unknown)
        super().__init__(metric)
        if not target:
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
        self.options = {
            "target": target,
            "train_kwargs": dict(train_kwargs or {}),
            "max_rounds": max_rounds,
            "max_labeled_demos": 0,  # train only on traces that passed the metric
            "seed": seed,
        }

    def settings(self) -> dict[str, Any]:
        return dict(self.options)

    def _run_flow(self, params: OptimizeParams) -> dict[str, Any]:
        from dspex.flows import local

        return local.finetune(params)
