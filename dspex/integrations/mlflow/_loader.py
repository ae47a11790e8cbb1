"""The ``python_function`` loader of the dspex flavor: ``mlflow.pyfunc.load_model`` calls
:func:`_load_pyfunc` with the model's ``data/dspex`` directory.

Loading reads JSON, checks it against its sha256 manifest and builds the ``dspex.Module``
its program reference names (nothing else: see ``dspex.primitives._trust``); nothing is unpickled.
``predict`` runs the program on every input row concurrently (on dspex's event loop) and
returns one output row per input row. If any row fails, ``predict`` raises that row's
original exception (its type, e.g. a retryable ``LMRateLimitError``, is kept) with a note
naming the row, rather than returning partial results.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex._runtime import bounded_gather, run_sync
from dspex.errors import UserError
from dspex.integrations.mlflow._program import load_program_dir, read_manifest
from dspex.primitives import Module

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONFIG_DEFAULTS", "DEFAULT_MAX_CONCURRENCY", "DspexPyfuncModel", "_load_pyfunc"]

DEFAULT_MAX_CONCURRENCY = 16


def _load_pyfunc(data_path: str, model_config: Any = None) -> DspexPyfuncModel:
    """Entry point named in the MLmodel's ``python_function.loader_module``.

    ``model_config`` (``mlflow.pyfunc.load_model(uri, model_config={...})``) may hold
    ``verify`` (``False`` skips the manifest check) and ``allowed_modules``; a service that
    only runs ``mlflow models serve`` sets ``$DSPEX_ALLOWED_MODULES`` instead. The LM comes
    from this process (``dspex.configure`` or the provider's environment variables), never
    from the model's files.
    """
    directory = Path(data_path)
    if directory.is_file():  # tolerate a data path that points at a file inside the dir
        directory = directory.parent
    config = _overrides(directory.parent.parent, model_config)
    verify = config.get("verify", True) is not False
    allowed = config.get("allowed_modules") or ()
    if isinstance(allowed, str):
        allowed = [m.strip() for m in allowed.split(",") if m.strip()]
    # data/dspex -> the model root, whose code/ holds the model's code_paths.
    code_dir = directory.parent.parent / "code"
    manifest = read_manifest(directory, verify=verify)
    program = load_program_dir(
        directory,
        verify=verify,
        allowed_modules=[str(m) for m in allowed],
        code_dir=code_dir if code_dir.is_dir() else None,
    )
    return DspexPyfuncModel(program, outputs=manifest.get("outputs", []))


def _overrides(root: Path, model_config: Any) -> dict[str, Any]:
    """The ``model_config`` keys the loading process set. MLflow merges the caller's
    overrides into the defaults stored in the MLmodel, which is data: a value equal to the
    stored one may come from the file, so only values that differ from it are used."""
    if not isinstance(model_config, Mapping):
        return {}
    stored: Any = {}
    try:
        from mlflow.models import Model

        stored = Model.load(str(root)).flavors.get("python_function", {}).get("config") or {}
    except Exception:  # no readable MLmodel (a bare data directory): nothing is stored
        stored = {}
    if not isinstance(stored, Mapping):
        stored = {}
    return {
        str(k): v
        for k, v in model_config.items()
        if k in CONFIG_DEFAULTS and (k not in stored or stored[k] != v)
    }


# Stored in the MLmodel so that ``mlflow.pyfunc.load_model(uri, model_config=...)`` accepts
# these keys; the stored values are never used (see ``_overrides``).
CONFIG_DEFAULTS: dict[str, Any] = {"verify": True, "allowed_modules": []}


class DspexPyfuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps: runs a dspex program on tabular input.

    Args:
        program: the loaded program.
        outputs: the output columns to use when there are no rows.
        max_concurrency: how many rows run at once.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> qa = dspex.Predict("question -> answer", lm=DummyLM([{"answer": "4"}]))
        >>> DspexPyfuncModel(qa, outputs=["answer"]).predict([{"question": "2+2?"}])
          answer
        0      4
    """

    def __init__(
        self,
        program: Module,
        *,
        outputs: Sequence[str] = (),
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.program = program
        self.outputs = list(outputs)
        self.max_concurrency = max(1, max_concurrency)

    def get_raw_model(self) -> Module:
        """The dspex program (``mlflow.pyfunc.load_model(uri).get_raw_model()``)."""
        return self.program

    def predict(self, model_input: Any, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run the program on each row; one output row per input row, in input order.

        Args:
            model_input: a pandas DataFrame, a list of dicts, or one dict (one row).
            params: unused; accepted for the pyfunc protocol.

        Raises:
            Exception: the first failing row's own exception, with a note naming the row.
        """
        import pandas as pd

        rows = _records(model_input)
        results = run_sync(_run_rows(self.program, rows, self.max_concurrency))
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        if failed:
            index, error = failed[0]
            error.add_note(
                f"(dspex pyfunc: input row {index} of {len(rows)} failed; "
                f"{len(failed)} row(s) failed in all)"
            )
            raise error
        records = [{k: _plain(v) for k, v in r.items()} for r in results]
        if not records:
            return pd.DataFrame(columns=self.outputs)
        return pd.DataFrame.from_records(records)


async def _run_rows(program: Module, rows: list[dict[str, Any]], limit: int) -> list[Any]:
    async def one(row: dict[str, Any]) -> Any:
        return await program.acall(**row)

    return await bounded_gather(one, rows, limit, return_exceptions=True)


def _records(model_input: Any) -> list[dict[str, Any]]:
    """Input rows as keyword arguments; missing optional values (None, NaN) are left out so
    the program's own defaults apply."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):
        raw = model_input.to_dict(orient="records")
    elif isinstance(model_input, Mapping):
        raw = [model_input]
    elif isinstance(model_input, Sequence) and not isinstance(model_input, str | bytes):
        raw = list(model_input)
    else:
        raw = None
    if raw is None or not all(isinstance(r, Mapping) for r in raw):
        raise UserError(
            "predict() takes a pandas DataFrame, a list of dicts or one dict (field name -> "
            f"value), got {type(model_input).__name__}."
        )
    return [{str(k): v for k, v in r.items() if not _missing(v)} for r in raw]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """Output values as plain JSON-able data (pydantic models as dicts, enums as values)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    return value
