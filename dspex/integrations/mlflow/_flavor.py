"""The ``dspex`` MLflow flavor: save, log and load programs as MLflow models.

A model directory::

    MLmodel                 flavors: dspex (program ref, versions) + python_function
    data/dspex/program.json the program's state (instructions, demos, LM config; no secrets)
    data/dspex/dspex.json   the manifest the loader reads (program ref, input/output fields)
    requirements.txt, python_env.yaml, conda.yaml, input_example.json (if given), code/ (if
    code_paths were given)

The ``python_function`` flavor names :mod:`dspex.integrations.mlflow._loader` as its
``loader_module``, so ``mlflow.pyfunc.load_model`` rebuilds the program from JSON and code;
nothing is pickled. MLflow is imported inside functions, never at import time.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex.errors import UserError
from dspex.integrations.mlflow._imports import import_mlflow
from dspex.integrations.mlflow._loader import CONFIG_DEFAULTS
from dspex.integrations.mlflow._program import (
    PackedProgram,
    load_program_dir,
    pack_program,
    write_manifest,
    write_program_dir,
)
from dspex.primitives import Example, Module
from dspex.primitives._trust import code_digest

if TYPE_CHECKING:
    from mlflow.models import Model, ModelSignature
    from mlflow.models.model import ModelInfo

__all__ = ["FLAVOR_NAME", "LOADER_MODULE", "load_model", "log_model", "log_packed", "save_model"]

FLAVOR_NAME = "dspex"
LOADER_MODULE = "dspex.integrations.mlflow._loader"
_DATA_DIR = "dspex"  # becomes data/dspex inside the model directory
_NO_EXAMPLE_WARNING = r".*An input example was not provided"


def log_model(
    program: Module,
    name: str = "program",
    *,
    registered_model_name: str | None = None,
    input_example: Any = None,
    signature: ModelSignature | None = None,
    program_ref: str | None = None,
    code_paths: Sequence[str] | None = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    run_id: str | None = None,
) -> ModelInfo:
    """Log ``program`` as an MLflow model of the ``dspex`` flavor (plus ``python_function``).

    Checks first that another process can rebuild the program (its class is importable, or
    ``program_ref`` builds it) and that its state holds no secret; only then logs.

    Args:
        program: the program to log.
        name: the model's name within the run.
        registered_model_name: also register it as a new version of this registered model.
        input_example: one input row (dict), several (list of dicts / ``Example``), or a
            DataFrame; stored with the model. The model is not run on it (no LM calls).
        signature: an MLflow ``ModelSignature``; by default inferred from the program (its
            input fields, and the output fields of its last predictor, as strings).
        program_ref: ``"package.module:attr"`` naming a Module class or zero-argument factory
            that builds this program; by default the program's own class.
        code_paths: local files or directories to ship with the model (prepended to
            ``sys.path`` when it is loaded), for programs not installed as a package.
        pip_requirements: the model's requirements; by default the running dspex version.
        extra_pip_requirements: requirements added to the default ones.
        run_id: the run to log into; by default the active run. Pass it when logging from a
            worker thread, where MLflow's active run is not visible.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``registered_model_version``, ...).

    Raises:
        UserError: the program cannot be rebuilt elsewhere, or its state holds a secret.

    Example:
        >>> import mlflow, dspex, dspex.mlflow
        >>> qa = dspex.ChainOfThought("question -> answer")
        >>> with mlflow.start_run():  # doctest: +SKIP
        ...     info = dspex.mlflow.log_model(qa, registered_model_name="qa")
    """
    packed = pack_program(program, program_ref)
    return log_packed(
        packed,
        name,
        registered_model_name=registered_model_name,
        input_example=_example_frame(input_example, packed if signature is None else None),
        signature=signature,
        code_paths=code_paths,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        run_id=run_id,
    )


def log_packed(
    packed: PackedProgram,
    name: str = "program",
    *,
    registered_model_name: str | None = None,
    input_example: Any = None,
    signature: ModelSignature | None = None,
    code_paths: Sequence[str] | None = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    run_id: str | None = None,
) -> ModelInfo:
    """:func:`log_model` for a program already packed (a value a Prefect task can take);
    ``input_example`` is a DataFrame or ``None`` here."""
    import_mlflow()
    from mlflow.models import Model

    info: ModelInfo = Model.log(
        artifact_path=None,
        name=name,
        flavor=_Flavor,
        flavor_name=FLAVOR_NAME,
        registered_model_name=registered_model_name,
        run_id=run_id,
        model_id=_model_in_run_experiment(name, run_id),
        packed=packed,
        signature=signature,
        input_example=input_example,
        code_paths=code_paths,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        # Validating the serving input runs the model on the example: LM calls at log time.
        validate_serving_input=False,
    )
    return info


def _model_in_run_experiment(name: str, run_id: str | None) -> str | None:
    """Create the LoggedModel for an explicit ``run_id`` in that run's experiment.

    Left to itself, MLflow puts it in the *active* experiment, which in a worker thread is
    the Default one, whose artifacts live in ``./mlruns`` of the working directory.
    """
    if run_id is None:
        return None
    import mlflow

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    model = client.create_logged_model(experiment_id, name=name, source_run_id=run_id)
    return str(model.model_id)


def save_model(
    program: Module,
    path: str | Path,
    *,
    input_example: Any = None,
    signature: ModelSignature | None = None,
    program_ref: str | None = None,
    code_paths: Sequence[str] | None = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
) -> None:
    """Write ``program`` as an MLflow model directory at ``path`` (no tracking server).

    The arguments are those of :func:`log_model`; ``path`` must not exist or be empty.

    Example:
        >>> import dspex, dspex.mlflow
        >>> qa = dspex.Predict("question -> answer")
        >>> dspex.mlflow.save_model(qa, "/tmp/qa-model")  # doctest: +SKIP
        >>> dspex.mlflow.load_model("/tmp/qa-model")  # doctest: +SKIP
        Predict(StringSignature(question -> answer))
    """
    packed = pack_program(program, program_ref)
    _write_model(
        Path(path),
        packed,
        signature=signature,
        input_example=_example_frame(input_example, packed if signature is None else None),
        code_paths=code_paths,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
    )


class _Flavor:
    """What ``mlflow.models.Model.log`` calls to write the model directory."""

    __name__ = FLAVOR_NAME

    @staticmethod
    def save_model(
        path: str,
        mlflow_model: Model,
        *,
        packed: PackedProgram,
        validate_serving_input: bool = False,  # read by Model.log itself
        **options: Any,
    ) -> None:
        _write_model(Path(path), packed, mlflow_model=mlflow_model, **options)


def _write_model(
    path: Path,
    packed: PackedProgram,
    *,
    mlflow_model: Model | None = None,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    code_paths: Sequence[str] | None = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
) -> None:
    import_mlflow()
    import mlflow.pyfunc
    from mlflow.models import Model

    from dspex._version import __version__

    model = mlflow_model if mlflow_model is not None else Model()
    model.add_flavor(FLAVOR_NAME, data=f"data/{_DATA_DIR}", **packed.manifest())
    if pip_requirements is None:
        # Explicit requirements also spare MLflow its inference, which loads the model in a
        # subprocess (and would import the user's program there).
        pip_requirements = [f"dspex=={__version__}"]
    with tempfile.TemporaryDirectory(prefix="dspex-model-") as tmp, warnings.catch_warnings():
        # The signature is always set, so MLflow's nudge towards an input example is noise
        # (and an error under -W error). Threads racing here can at worst leave it ignored.
        warnings.filterwarnings("ignore", message=_NO_EXAMPLE_WARNING)
        data = Path(tmp) / _DATA_DIR
        write_program_dir(packed, data)
        mlflow.pyfunc.save_model(
            str(path),
            loader_module=LOADER_MODULE,
            data_path=str(data),
            code_paths=list(code_paths) if code_paths is not None else None,
            mlflow_model=model,
            model_config=dict(CONFIG_DEFAULTS),
            signature=signature if signature is not None else _infer_signature(packed),
            input_example=input_example,
            pip_requirements=list(pip_requirements),
            extra_pip_requirements=(
                list(extra_pip_requirements) if extra_pip_requirements is not None else None
            ),
        )
    # Seal the shipped code_paths too: the loader imports the program from them.
    digest = code_digest(_code_dir(path, model))
    if digest is not None:
        write_manifest({**packed.manifest(), "code_sha256": digest}, path / "data" / _DATA_DIR)


def _code_dir(local: Path, model: Model) -> Path | None:
    code = model.flavors.get("python_function", {}).get("code")
    return local / code if code else None


def _infer_signature(packed: PackedProgram) -> ModelSignature:
    """String columns: the program's inputs (optional ones not required) and outputs."""
    import_mlflow()
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    inputs = Schema(
        [ColSpec(DataType.string, name, required=required) for name, required in packed.inputs]
    )
    outputs = Schema([ColSpec(DataType.string, name) for name in packed.outputs])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _example_frame(example: Any, packed: PackedProgram | None) -> Any:
    """An input example as a DataFrame (what MLflow stores as ``dataframe_split``), checked
    against the program's inputs when the signature is inferred from them."""
    if example is None:
        return None
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        frame = example.copy()
    else:
        rows = [example] if isinstance(example, Mapping) else example
        if not isinstance(rows, Sequence) or not all(isinstance(r, Mapping) for r in rows):
            raise UserError(
                "input_example must be a dict (one row), a list of dicts or Examples, or a "
                f"pandas DataFrame; got {type(example).__name__}."
            )
        # An Example with declared inputs contributes only those (not its gold labels).
        frame = pd.DataFrame.from_records(
            [dict(r.inputs()) if isinstance(r, Example) and r.input_keys else dict(r) for r in rows]
        )
    # MLflow compares the column index with a range, which pandas 3 deprecates for its
    # string-typed indexes; plain object labels keep that comparison warning-free.
    frame.columns = pd.Index(list(frame.columns), dtype=object)
    if packed is not None:
        names = {name for name, _ in packed.inputs}
        missing = [n for n, required in packed.inputs if required and n not in frame.columns]
        unknown = [c for c in frame.columns if c not in names]
        if missing or unknown:
            raise UserError(
                f"input_example does not fit the program's inputs {sorted(names)}: missing "
                f"{missing}, unknown {unknown}. Give one value per input field."
            )
    return frame


def load_model(
    model_uri: str,
    *,
    dst_path: str | None = None,
    lm: Any = None,
    verify: bool = True,
    allowed_modules: Sequence[str] = (),
    embedder: Any = None,
) -> Module:
    """Load a program logged with :func:`log_model` as a dspex program.

    The model's files are data: they are checked against the sha256 manifest written when
    the model was logged, and the program they name must be a ``dspex.Module`` subclass
    from dspex, an already imported module, the model's own ``code_paths`` or
    ``allowed_modules``; nothing else is imported or called. Where prompts go is decided by
    this process (``lm``, ``dspex.configure``/``dspex.context``), never by the model: a saved
    ``api_base``, ``base_url``, headers or transport are ignored; the model name is kept.

    Args:
        model_uri: any MLflow model URI: ``models:/qa@champion``, ``models:/qa/3``,
            ``runs:/<run_id>/program``, ``models:/<model_id>`` or a local path.
        dst_path: where to download the model; a temporary directory by default.
        lm: if given, every predictor uses this LM instead of the one it was logged with.
        verify: ``False`` skips the manifest check, for a model you edited by hand (or one
            logged before dspex sealed models) and trust. The program reference is checked
            either way.
        allowed_modules: packages the program's class may be imported from, e.g.
            ``["my_project"]`` (also ``$DSPEX_ALLOWED_MODULES``, comma-separated).
        embedder: the ``dspex.Embedder`` that the program's logged dense indexes embed
            queries with (see ``docs/retrieval.md``); by default one built from the model
            name recorded with the index, with this process's endpoint and key.

    Returns:
        The program, rebuilt from its code reference with its instructions, demos and LM
        config loaded. Predictors logged with an LM that cannot be rebuilt from a file (a
        test double) use the LM configured in ``dspex.context``.

    Raises:
        ProgramIntegrityError: the model was edited after it was logged, has no manifest,
            or names a program reference that is not an allowed ``dspex.Module``.
        UserError: the model is not of the dspex flavor.

    Example:
        >>> import dspex.mlflow
        >>> qa = dspex.mlflow.load_model("models:/qa@champion")  # doctest: +SKIP
        >>> qa(question="What is 2 + 2?").answer  # doctest: +SKIP
        '4'
    """
    import_mlflow()
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    local = Path(download_artifacts(artifact_uri=model_uri, dst_path=dst_path))
    model = Model.load(str(local))
    conf = model.flavors.get(FLAVOR_NAME)
    if conf is None:
        raise UserError(
            f"{model_uri} is not a dspex model (its flavors are {sorted(model.flavors)}); "
            "load it with mlflow.pyfunc.load_model() instead."
        )
    code_dir = _code_dir(local, model)
    if code_dir is not None and str(code_dir) not in sys.path:
        # The same as MLflow's pyfunc loader does for code_paths.
        sys.path.insert(0, str(code_dir))
    return load_program_dir(
        local / "data" / _DATA_DIR,
        lm=lm,
        verify=verify,
        allowed_modules=allowed_modules,
        code_dir=code_dir,
        embedder=embedder,
    )
