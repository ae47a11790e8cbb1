"""What a saved program or model directory may make the loading process do: build a
``dspex.Module``. Used by ``dspex.load`` (a whole program saved with
``save(dir, save_program=True)``) and the MLflow flavor.

A model's files are data (anyone with write access to the registry's artifact store can edit
them), so the program reference they name is checked before anything is called:

* the module it names is imported only if it is part of dspex, already imported by this
  process (importing it again runs nothing), shipped in the model's own ``code/`` directory
  (its ``code_paths``, covered by the model's manifest), or in the loader's allowlist
  (``allowed_modules=`` or ``$DSPEX_ALLOWED_MODULES``);
* the object it names must be a ``dspex.Module`` subclass, or a plain function defined in
  an explicitly allowed module (the model's ``code/`` or the allowlist: a factory);
* ``os:system`` and the like are refused with :class:`~dspex.errors.ProgramIntegrityError`
  and nothing is called.

Both JSON files of the model directory are sealed with the same sha256 manifest as
``Module.save`` files (:mod:`dspex.primitives._program_file`).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dspex.errors import ProgramIntegrityError
from dspex.primitives._module import Module
from dspex.primitives._program_file import MANIFEST_KEY, read_program_file, verify_manifest

__all__ = [
    "ALLOWED_MODULES_ENV",
    "allowed_from_env",
    "build_trusted",
    "code_digest",
    "read_sealed",
]

ALLOWED_MODULES_ENV = "DSPEX_ALLOWED_MODULES"
_VERIFY_HINT = (
    "If you trust this model (e.g. you edited it by hand on purpose, or it was logged before "
    "dspex sealed models), load it with dspex.mlflow.load_model(uri, verify=False) or "
    "mlflow.pyfunc.load_model(uri, model_config={'verify': False}), then log it again to "
    "seal it."
)


def allowed_from_env() -> tuple[str, ...]:
    """``$DSPEX_ALLOWED_MODULES`` (comma-separated module names), for ``mlflow models serve``."""
    raw = os.environ.get(ALLOWED_MODULES_ENV, "")
    return tuple(m.strip() for m in raw.split(",") if m.strip())


def read_sealed(path: Path, *, verify: bool, hint: str = _VERIFY_HINT) -> dict[str, Any]:
    """A model JSON file without its manifest; checked against the manifest when ``verify``.
    ``hint`` says how to load it anyway (the loader's own words)."""
    state = read_program_file(path, verify=verify)
    if verify:
        if MANIFEST_KEY not in state:
            raise ProgramIntegrityError(
                f"{path}: this dspex model has no sha256 manifest (it was logged by a dspex "
                "that did not seal models, or the manifest was removed), so dspex cannot tell "
                f"whether it was edited. Nothing was loaded. {hint}",
                path=str(path),
            )
        try:
            verify_manifest(state, path)
        except ProgramIntegrityError as e:
            raise ProgramIntegrityError(f"{e} {hint}", path=str(path)) from None
    return {k: v for k, v in state.items() if k != MANIFEST_KEY}


def code_digest(code_dir: Path | None) -> str | None:
    """sha256 over the files of a model's ``code/`` directory (names and bytes)."""
    if code_dir is None or not code_dir.is_dir():
        return None
    digest = hashlib.sha256()
    for f in sorted(code_dir.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            digest.update(f.relative_to(code_dir).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


def build_trusted(
    ref: Any,
    args: Any,
    *,
    allowed_modules: Iterable[str] = (),
    code_dir: Path | None = None,
    where: str = "model",
    loader: str = "dspex.mlflow.load_model()",
) -> Module:
    """Build the program ``ref`` names, if a model's files may name it (see module doc).

    Raises:
        ProgramIntegrityError: ``ref`` names anything else; nothing was imported or called.
    """
    allowed = tuple(allowed_modules) + allowed_from_env()
    if not isinstance(ref, str) or not isinstance(args, Mapping | None):
        raise _refused(where, repr(ref), "its program_ref/program_args are malformed")
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise _refused(where, ref, "it is not of the form 'package.module:Class'")
    explicit = _in(module_name, allowed) or _shipped(module_name, code_dir)
    if not (explicit or _in(module_name, ("dspex",)) or module_name in sys.modules):
        raise _refused(
            where,
            ref,
            f"module {module_name!r} is neither part of dspex, already imported, shipped in "
            "the model's code_paths, nor allowed by the loader. If it is your program's "
            f"module, pass allowed_modules=[{module_name.split('.')[0]!r}] to "
            f"{loader} or set {ALLOWED_MODULES_ENV}={module_name.split('.')[0]}",
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise _refused(where, ref, f"it cannot be imported ({e})") from None
    if isinstance(obj, type) and issubclass(obj, Module):
        pass
    elif inspect.isfunction(obj) and explicit and obj.__module__ == module_name:
        pass  # a factory in code this loader trusts explicitly
    else:
        raise _refused(
            where,
            ref,
            f"it names a {type(obj).__name__}, not a dspex.Module subclass (a factory "
            "function is accepted only from a module in allowed_modules or the model's "
            "code_paths)",
        )
    try:
        program = obj(**dict(args or {}))
    except TypeError as e:
        raise _refused(where, ref, f"it cannot be built from program_args ({e})") from None
    if not isinstance(program, Module):
        raise _refused(where, ref, f"it returned a {type(program).__name__}, not a dspex.Module")
    return program


def _in(module_name: str, roots: Iterable[str]) -> bool:
    return any(module_name == r or module_name.startswith(r + ".") for r in roots)


def _shipped(module_name: str, code_dir: Path | None) -> bool:
    """Whether the top-level package of ``module_name`` lives in the model's ``code/``."""
    if code_dir is None:
        return False
    top = module_name.split(".")[0]
    return (code_dir / top).is_dir() or (code_dir / f"{top}.py").is_file()


def _refused(where: str, ref: str, why: str) -> ProgramIntegrityError:
    return ProgramIntegrityError(
        f"{where}: refusing to load program_ref {ref!r}: {why}. A model may only name a "
        "dspex.Module subclass; nothing was called.",
        path=where,
    )
