"""Flow parameters: one pydantic model, so the Prefect UI renders a form for a run.

Everything in here is a value: references (``package.module:attr``) instead of live objects,
dataset specs instead of examples, LM settings instead of clients (keys come from the
environment, never from parameters).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dspex.errors import ConfigurationError, UnknownSettingError, UserError
from dspex.primitives import Example

__all__ = [
    "SETTINGS_MODELS",
    "TRAIN_KWARGS",
    "BootstrapFewShotSettings",
    "BootstrapFinetuneSettings",
    "BudgetSpec",
    "DatasetSpec",
    "EvaluateParams",
    "LMSpec",
    "LabeledFewShotSettings",
    "MIPROv2Settings",
    "NightlyParams",
    "OptimizeParams",
    "OptimizerSettings",
    "PromotionSpec",
    "RandomSearchSettings",
    "RunInputs",
    "TaskRunnerSpec",
    "TrackingSpec",
    "UnknownSettingError",
    "check_names",
    "check_settings",
]

OptimizerName = Literal[
    "LabeledFewShot",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "MIPROv2",
    "BootstrapFinetune",
]


LMRateLimit = Annotated[
    str | None,
    Field(
        description="name of a Prefect global concurrency limit with slot decay that every LM "
        "request of the run takes a slot from (default: $DSPEX_LM_RATE_LIMIT); the run fails "
        "before any LM call if it does not exist"
    ),
]


def check_names(
    optimizer: str, given: Iterable[str], valid: Iterable[str], *, what: str = "setting"
) -> None:
    """Raise :class:`UnknownSettingError` if ``given`` holds a name not in ``valid``.

    Example:
        >>> try:
        ...     check_names("LabeledFewShot", ["kk"], ["k", "seed"])
        ... except UnknownSettingError as e:
        ...     print(e)
        LabeledFewShot has no setting 'kk'; did you mean 'k'? Its settings: k, seed.
    """
    names = sorted(set(valid))
    unknown = sorted(set(given) - set(names))
    if not unknown:
        return
    sentences = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        sentences.append(f"{optimizer} has no {what} {key!r}{hint}")
    raise UnknownSettingError(f"{' '.join(sentences)} Its {what}s: {', '.join(names)}.")


class OptimizerSettings(BaseModel):
    """What every optimizer's ``settings`` may hold; each optimizer's model adds its own.

    The one list of setting names: ``OptimizeParams`` (flow parameters, TOML configs) checks
    ``settings`` against the chosen optimizer's model, and the optimizer classes'
    ``settings()`` produce exactly these keys. Defaults are those the flows use.
    """

    model_config = ConfigDict(extra="forbid")

    optimizer: ClassVar[str]
    teacher: str | None = Field(
        None, description="'package.module:attr' naming the teacher program (compile(teacher=))"
    )
    seed: int = 0


class LabeledFewShotSettings(OptimizerSettings):
    """``LabeledFewShot``: ``k`` labeled demos per predictor."""

    optimizer = "LabeledFewShot"
    k: int = Field(16, ge=0)


def _teacher_settings(value: dict[str, Any]) -> dict[str, Any]:
    """``dspex.context`` settings as JSON values; ``lm`` as an :class:`LMSpec`'s fields."""
    import dataclasses

    from dspex._settings import Settings

    names = [f.name for f in dataclasses.fields(Settings)]
    check_names("teacher_settings", value, names, what="dspex.context setting")
    for key, item in value.items():
        if key == "lm":
            LMSpec.model_validate(item)
        elif key in ("adapter", "callbacks"):
            raise ValueError(
                f"teacher_settings[{key!r}] is not a value a flow parameter can hold; set it "
                "on the teacher program instead (compile(teacher=...))."
            )
    return value


TeacherSettings = Annotated[
    dict[str, Any],
    AfterValidator(_teacher_settings),
    Field(
        description="dspex.context settings the teacher runs under while bootstrapping, e.g. "
        "{'lm': {'model': 'openai/gpt-4o'}}"
    ),
]
MaxErrors = Annotated[
    int | None,
    Field(
        None,
        ge=0,
        description="stop once this many examples failed (teacher or evaluation); None: "
        "dspex.settings.max_errors, else never",
    ),
]


class BootstrapFewShotSettings(OptimizerSettings):
    """``BootstrapFewShot``: demos from traces that pass the metric, topped up with labels."""

    optimizer = "BootstrapFewShot"
    max_bootstrapped_demos: int = Field(4, ge=0)
    max_labeled_demos: int = Field(16, ge=0)
    max_rounds: int = Field(1, ge=1)
    metric_threshold: float | None = None
    teacher_settings: TeacherSettings = Field(default_factory=dict)
    max_errors: MaxErrors = None


class RandomSearchSettings(BootstrapFewShotSettings):
    """``BootstrapFewShotWithRandomSearch``: several bootstrapped candidates, the best wins."""

    optimizer = "BootstrapFewShotWithRandomSearch"
    num_candidate_programs: int = Field(8, ge=0)
    stop_at_score: float | None = Field(
        None, description="candidates after the first scoring at least this are not chosen"
    )
    racing: bool = Field(
        True,
        description="race the candidates: score all on half the valset, drop those "
        "statistically behind, score the rest on all of it (False: every candidate on all)",
    )


class MIPROv2Settings(OptimizerSettings):
    """``MIPROv2``: instructions and demos chosen by Bayesian search over minibatches."""

    optimizer = "MIPROv2"
    auto: Literal["light", "medium", "heavy"] | None = None
    num_candidates: int | None = Field(None, ge=2)
    max_bootstrapped_demos: int = Field(4, ge=0)
    max_labeled_demos: int = Field(4, ge=0)
    minibatch_size: int = Field(35, ge=1)
    minibatch_full_eval_steps: int = Field(5, ge=1)
    num_trials: int | None = Field(None, ge=1)
    trial_batch_size: int = Field(4, ge=1)
    minibatch: bool = Field(True, description="False: every trial on the full valset")
    metric_threshold: float | None = None
    teacher_settings: TeacherSettings = Field(default_factory=dict)
    max_errors: MaxErrors = None
    prompt_model: str | None = Field(None, description="'package.module:attr' naming an LM")
    optuna_storage: str | None = Field(None, description="an Optuna RDB URL; default SQLite")


# The fields of dspex.finetune.TrainSettings (a layer above this one; a test keeps the two
# equal), so a flow parameter's train_kwargs typo fails before bootstrapping, not after.
TRAIN_KWARGS: tuple[str, ...] = (
    "batch_size",
    "device",
    "gradient_accumulation_steps",
    "gradient_checkpointing",
    "learning_rate",
    "logging_steps",
    "lora_alpha",
    "lora_dropout",
    "lora_r",
    "max_length",
    "max_steps",
    "modules_to_save",
    "precision",
    "save_steps",
    "seed",
    "target_modules",
)


class BootstrapFinetuneSettings(OptimizerSettings):
    """``BootstrapFinetune``: a LoRA adapter per predictor, trained on passing traces."""

    optimizer = "BootstrapFinetune"
    target: str | None = Field(
        None,
        min_length=1,
        description="a model directory or hub id; default: the run's LM when it is a local/ one",
    )
    train_kwargs: dict[str, Any] = Field(default_factory=dict, description="TrainSettings")
    max_rounds: int = Field(1, ge=1)
    max_labeled_demos: int = Field(0, ge=0)


SETTINGS_MODELS: Mapping[str, type[OptimizerSettings]] = {
    m.optimizer: m
    for m in (
        LabeledFewShotSettings,
        BootstrapFewShotSettings,
        RandomSearchSettings,
        MIPROv2Settings,
        BootstrapFinetuneSettings,
    )
}


def check_settings(optimizer: str, settings: Mapping[str, Any]) -> None:
    """Check ``settings`` against ``optimizer``'s settings model, before any LM call.

    An unknown name raises :class:`UnknownSettingError` (did you mean ...?); a bad value
    raises ``ValueError`` naming the field.
    """
    model = SETTINGS_MODELS[optimizer]
    check_names(optimizer, settings, model.model_fields)
    train_kwargs = settings.get("train_kwargs")
    if isinstance(train_kwargs, Mapping):
        check_names(optimizer, train_kwargs, TRAIN_KWARGS, what="train_kwargs key")
    try:
        model.model_validate(dict(settings))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ValueError(f"{optimizer} settings: {problems}") from None


class DatasetSpec(BaseModel):
    """Where examples come from: a reference, a bundled task's split, or a file."""

    model_config = ConfigDict(extra="forbid")

    ref: str | None = Field(None, description="'package.module:attr' naming a list of Examples")
    task: str | None = Field(None, description="a bundled task: arithmetic or factqa")
    split: Literal["train", "dev", "test"] = "train"
    train_size: int = Field(50, ge=0)
    dev_size: int = Field(100, ge=0)
    path: str | None = Field(None, description="a .jsonl, .csv or .parquet file")
    input_keys: list[str] | None = None
    seed: int = 0

    def load(self) -> list[Example]:
        """The examples this spec names."""
        from dspex.optimize._refs import resolve_examples

        if self.ref:
            return list(resolve_examples(self.ref))
        if self.task:
            from dspex.datasets import load_task

            splits = load_task(self.task).split(
                train=self.train_size, dev=self.dev_size, seed=self.seed
            )
            return list(getattr(splits, self.split))
        if self.path:
            return _load_file(self.path, self.input_keys)
        raise UserError("A dataset needs one of ref=, task= or path=.")


def _load_file(path: str, input_keys: list[str] | None) -> list[Example]:
    from dspex import datasets

    if not input_keys:
        raise UserError(f"Dataset {path!r}: give input_keys=[...] (the program's inputs).")
    loaders = {
        ".jsonl": datasets.load_jsonl,
        ".csv": datasets.load_csv,
        ".parquet": datasets.load_parquet,
    }
    for suffix, loader in loaders.items():
        if path.endswith(suffix):
            return list(loader(path, input_keys=input_keys))
    raise UserError(f"Dataset {path!r}: use a .jsonl, .csv or .parquet file.")


_SECRET_REF = re.compile(r"^(env|prefect-secret):[A-Za-z0-9_./-]+$")
_HEADER_KWARGS = ("extra_headers", "headers")


def _secret_ref(value: str) -> str:
    if not _SECRET_REF.match(value):
        raise ValueError(
            "give a reference, not the secret: 'env:VARIABLE' (an environment variable of the "
            "process that runs the task) or 'prefect-secret:BLOCK' (a Prefect Secret block)"
        )
    return value


SecretRef = Annotated[str, AfterValidator(_secret_ref)]
"""Where a credential is read when a task runs: ``env:VAR`` or ``prefect-secret:BLOCK``.
Flow parameters are stored in Prefect's database in plain text, so they hold only this."""


def resolve_secret(ref: str) -> str:
    """The value a :data:`SecretRef` names (registered for redaction)."""
    from dspex._redact import register_secret

    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise ConfigurationError(
                f"The LM credential {ref!r} is not set: export {name} in the environment of "
                "the process that runs the flow's tasks (the worker, for a deployment)."
            )
    else:
        from prefect.blocks.system import Secret

        try:
            block: Any = Secret.load(name)  # typed as maybe-async; sync here
            value = str(block.get())
        except ValueError as e:
            raise ConfigurationError(
                f"The LM credential {ref!r} names no Prefect Secret block ({e}); create it "
                f"with `prefect block create secret` or in the UI, named {name!r}."
            ) from None
    register_secret(value)
    return value


class LMSpec(BaseModel):
    """The LM every predictor without its own uses. Credentials are references
    (``env:VAR``, ``prefect-secret:BLOCK``), resolved where the task runs: flow parameters are
    stored in Prefect's database in plain text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(..., description="e.g. openai/gpt-4o-mini or dspex-sim/arithmetic")
    api_base: str | None = None
    ref: str | None = Field(None, description="or 'package.module:attr' naming a dspex.LM")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens...")
    api_key: SecretRef | None = Field(
        None, description="'env:VAR' or 'prefect-secret:BLOCK'; default: the provider's variable"
    )
    headers: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="request headers from references, e.g. Authorization: env:MY_GATEWAY_AUTH",
    )

    @field_validator("kwargs")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        from dspex._redact import is_secret_key

        bad = [k for k in value if is_secret_key(k) and not k.endswith("_tokens")]
        for key in _HEADER_KWARGS:
            headers = value.get(key)
            if isinstance(headers, dict):
                bad += [f"{key}.{h}" for h in headers if is_secret_key(h)]
        if bad:
            raise ValueError(
                f"{bad} look like credentials; flow parameters are stored in plain text. Pass a "
                "reference instead: lm.api_key = 'env:VAR' or lm.headers = {'Authorization': "
                "'env:VAR'} ('prefect-secret:BLOCK' works too), or set the provider's "
                "environment variable on the worker."
            )
        return value

    def build(self) -> Any:
        """The LM, with its credentials read now (in the task's process)."""
        from dspex.lm import LM
        from dspex.optimize._refs import resolve

        if self.ref:
            return resolve(self.ref)
        kwargs = dict(self.kwargs)
        if self.headers:
            plain = dict(kwargs.pop("extra_headers", None) or {})
            plain.update({h: resolve_secret(r) for h, r in self.headers.items()})
            kwargs["extra_headers"] = plain
        api_key = resolve_secret(self.api_key) if self.api_key else None
        return LM(self.model, api_base=self.api_base, api_key=api_key, **kwargs)


class BudgetSpec(BaseModel):
    """Caps for the whole run; reaching one stops it cleanly with the best program so far."""

    model_config = ConfigDict(extra="forbid")

    max_calls: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)


class TrackingSpec(BaseModel):
    """Where the run is logged and under which name the winner is registered."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = "dspex"
    model_name: str | None = Field(None, description="register the winner under this name")
    alias: str | None = Field(None, description="point this alias at the registered version")
    tracking_uri: str | None = Field(None, description="default: SQLite under the runs dir")


class TaskRunnerSpec(BaseModel):
    """Where a run's tasks execute: threads of the flow's process, or a Dask cluster."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threads", "dask"] = "threads"
    dask_address: str | None = Field(
        None, description="a Dask scheduler (tcp://host:8786); none: a temporary local cluster"
    )
    dask_workers: int = Field(2, ge=1, description="processes of the temporary local cluster")


class _Params(BaseModel):
    """Flow parameters: an unknown optimizer setting raises as itself (see below)."""

    def __init__(self, **data: Any) -> None:
        with _unknown_settings_as_themselves():
            super().__init__(**data)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        with _unknown_settings_as_themselves():
            return super().model_validate(obj, **kwargs)


class OptimizeParams(_Params):
    """Everything one optimization run needs; the form the Prefect UI shows."""

    model_config = ConfigDict(extra="forbid")

    program: str = Field(
        ...,
        description="'package.module:attr' naming the program (or a factory), or "
        "'cot:question -> answer' / 'predict:...' for a one-predictor program",
    )
    metric: str = Field(
        "dspex.evaluate:exact_match", description="'package.module:attr' of metric(ex, pred, trace)"
    )
    trainset: DatasetSpec
    valset: DatasetSpec | None = None
    lm: LMSpec | None = None
    optimizer: OptimizerName = "BootstrapFewShotWithRandomSearch"
    settings: dict[str, Any] = Field(default_factory=dict, description="optimizer arguments")
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    concurrency: int = Field(16, ge=1)
    lm_rate_limit: LMRateLimit = None
    task_runner: TaskRunnerSpec = Field(default_factory=TaskRunnerSpec)
    runs_dir: str | None = None

    @model_validator(mode="after")
    def _known_settings(self) -> Self:
        check_settings(self.optimizer, self.settings)
        return self


@contextmanager
def _unknown_settings_as_themselves() -> Iterator[None]:
    """Re-raise an :class:`UnknownSettingError` that pydantic wrapped (it is a ``ValueError``,
    as DSPy's are) as itself: a ``ConfigurationError`` with its did-you-mean, not one line of
    a ``ValidationError``."""
    try:
        yield
    except ValidationError as e:
        for error in e.errors():
            found = (error.get("ctx") or {}).get("error")
            if isinstance(found, UnknownSettingError):
                raise found from None
        raise


class RunInputs(BaseModel):
    """One run as its tasks see it: references, dataset specs, fingerprints and settings.

    Built once by the flow from :class:`OptimizeParams` and passed to every task. Frozen and
    made of values only, so Prefect hashes it the same way in every process: a restarted
    run's tasks get the cache keys of the first run's and find their persisted results.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: OptimizerName
    program: str = Field(..., description="as in OptimizeParams.program")
    program_fp: str = Field(..., description="fingerprint of the program's state")
    metric: str
    trainset: DatasetSpec
    trainset_fp: str
    valset: DatasetSpec | None = None
    valset_fp: str | None = None
    lm_ref: str | None = Field(None, description="'package.module:attr' naming the LM")
    lm: LMSpec | None = Field(None, description="the LM to build in the task (references only)")
    settings: dict[str, Any] = Field(default_factory=dict, description="optimizer arguments")


class EvaluateParams(_Params):
    """One evaluation run: a program on a dataset, logged to MLflow."""

    model_config = ConfigDict(extra="forbid")

    program: str = Field(..., description="as in OptimizeParams.program, or 'models:/NAME@ALIAS'")
    metric: str = "dspex.evaluate:exact_match"
    dataset: DatasetSpec
    lm: LMSpec | None = None
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    concurrency: int = Field(16, ge=1)
    lm_rate_limit: LMRateLimit = None
    runs_dir: str | None = None


class PromotionSpec(BaseModel):
    """How a challenger becomes the champion in the MLflow registry."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(..., description="the registered model services load")
    champion_alias: str = Field("champion", description="the alias services load")
    previous_alias: str | None = Field("previous", description="keeps the replaced champion")
    margin: float = Field(
        0.0,
        ge=0,
        description="score points (0-100) on the test split by which the challenger must beat "
        "the champion; 0: any improvement",
    )


class NightlyParams(_Params):
    """A promotion run: optimize, then promote the winner only if it beats the champion on a
    held-out test split. The form the nightly deployment's runs (and the Prefect UI) use."""

    model_config = ConfigDict(extra="forbid")

    optimize: OptimizeParams
    testset: DatasetSpec = Field(..., description="held out: neither trained nor selected on")
    promotion: PromotionSpec
    skip_unchanged: bool = Field(
        True,
        description="skip the run when the program, data and settings are those the current "
        "champion (or an already rejected challenger) came from",
    )

    @field_validator("optimize")
    @classmethod
    def _registers_itself(cls, value: OptimizeParams) -> OptimizeParams:
        if value.tracking.model_name or value.tracking.alias:
            raise ValueError(
                "leave optimize.tracking.model_name and alias empty: the promotion registers "
                "the winner (promotion.model_name) and moves the alias itself."
            )
        return value
