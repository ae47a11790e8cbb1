"""Packing a program for MLflow and rebuilding it: code reference + JSON state, no pickle.

A logged program is two things: a *program reference* (``"package.module:QualName"`` of a
``Module`` class, or of a zero-argument factory) that code rebuilds the structure from, and
the JSON state of :meth:`dspex.Module.dump_state` (instructions, demos, LM config) loaded into
it. Built-in ``Predict``/``ChainOfThought`` programs also carry their signature string, since
their constructor needs one. Nothing here imports MLflow.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspex import _redact
from dspex._jsonable import json_default
from dspex.errors import DataError, DspexError, ProgramIntegrityError, UserError
from dspex.integrations.mlflow._retrievers import (
    PackedRetriever,
    attach_retrievers,
    bundle_retrievers,
    pack_retrievers,
)
from dspex.primitives._module import STATE_SCHEMA_VERSION, Module
from dspex.primitives._program_file import seal
from dspex.primitives._trust import build_trusted, code_digest, read_sealed
from dspex.primitives._whole import without_lms
from dspex.signatures import Signature

__all__ = [
    "MANIFEST_FILE",
    "STATE_FILE",
    "PackedProgram",
    "build_program",
    "load_program_dir",
    "pack_program",
    "read_manifest",
    "write_manifest",
    "write_program_dir",
]

STATE_FILE = "program.json"
MANIFEST_FILE = "dspex.json"
MANIFEST_FORMAT = 1
# Long enough to be a real key (sk-proj-..., sk-ant-...), not prose like "sk-learn".
_PROVIDER_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")


@dataclass(frozen=True)
class PackedProgram:
    """A program reduced to what a model directory stores.

    Attributes:
        ref: ``"module:attr"`` naming a Module class or a zero-argument factory.
        args: keyword arguments for ``ref`` (only built-ins need any: their signature).
        state: the program's :meth:`~dspex.Module.dump_state`.
        text: ``state`` as the JSON text written to ``program.json``.
        inputs: the program's input fields as ``(name, required)``.
        outputs: the program's output fields.
        retrievers: the indexes of the retrievers the program holds, saved as files
            (see :mod:`dspex.integrations.mlflow._retrievers`).
    """

    ref: str
    args: dict[str, Any]
    state: dict[str, Any]
    text: str
    inputs: tuple[tuple[str, bool], ...]
    outputs: tuple[str, ...]
    retrievers: tuple[PackedRetriever, ...] = ()

    def manifest(self) -> dict[str, Any]:
        """What the ``dspex`` flavor records: enough to rebuild the program elsewhere."""
        from dspex._version import __version__

        retrievers = {"retrievers": [r.manifest() for r in self.retrievers]}
        return {
            **(retrievers if self.retrievers else {}),
            "format": MANIFEST_FORMAT,
            "dspex_version": __version__,
            "program_ref": self.ref,
            "program_args": self.args,
            "state_schema_version": STATE_SCHEMA_VERSION,
            "state_file": STATE_FILE,
            "inputs": [name for name, _ in self.inputs],
            "outputs": list(self.outputs),
        }


def pack_program(program: Module, program_ref: str | None = None) -> PackedProgram:
    """Check that ``program`` can be rebuilt in another process, and pack it.

    Raises:
        UserError: the program's class cannot be imported elsewhere (it lives in
            ``__main__`` or a function), ``program_ref`` does not build a program that takes
            this state, or the state holds something that looks like a secret.
    """
    if not isinstance(program, Module):
        raise UserError(
            f"log_model() takes a dspex.Module (a Predict, ChainOfThought or your own "
            f"Module subclass), got {type(program).__name__}."
        )
    ref, args = (program_ref, {}) if program_ref is not None else _auto_ref(program)
    state = program.dump_state()
    text = json.dumps(state, indent=2, ensure_ascii=False, default=json_default)
    _refuse_secrets(state)
    _check_rebuild(program, ref, args, state)
    inputs, outputs = infer_fields(program)
    return PackedProgram(ref, args, state, text, inputs, outputs, pack_retrievers(program))


def _refuse_secrets(state: Mapping[str, Any]) -> None:
    """dump_state never includes API keys; one here came in through demos, instructions or
    config, and would be stored in the model for anyone with read access to see."""
    for name, predictor in dict(state.get("predictors") or {}).items():
        text = json.dumps(predictor, ensure_ascii=False, default=json_default)
        registered = any(secret in text for secret in _redact._secrets)
        if registered or _PROVIDER_KEY.search(text):
            what = "an LM's api_key" if registered else "a string shaped like a provider key"
            raise UserError(
                f"Predictor {name!r} holds {what} in its demos, instructions or config; the "
                "program will not be logged. Remove it from the program and log again."
            )


def _auto_ref(program: Module) -> tuple[str, dict[str, Any]]:
    """The reference to ``program``'s class, plus constructor arguments for built-ins."""
    ref, args = program._rebuild_spec()
    if ref.startswith("dspex:"):
        return ref, args
    cls = type(program)
    module, qualname = cls.__module__, cls.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        where = "in __main__ (a script or notebook)" if module == "__main__" else "in a function"
        raise UserError(
            f"{qualname} is defined {where}, so another process cannot import it to rebuild "
            "the program. Define the program class in an importable module (e.g. "
            "my_project/programs.py), or pass program_ref='my_project.programs:make_program' "
            "naming a class or zero-argument factory that builds it."
        )
    try:
        found = resolve_ref(ref)
    except UserError:
        found = None
    if found is not cls:
        raise UserError(
            f"{ref} does not resolve to the class of this program (it was created dynamically "
            "or its module was reloaded). Pass program_ref='module:attr' naming a class or "
            "zero-argument factory that builds it."
        )
    return ref, args


def resolve_ref(ref: str) -> Any:
    """Import ``"package.module:Attr.path"`` and return the object it names."""
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise UserError(f"program_ref {ref!r} must look like 'package.module:ClassOrFactory'.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(
            f"program_ref {ref!r}: cannot import {module_name!r} ({e}). Install the package "
            "that defines the program (or log the model with code_paths=[...]), or put it "
            "on PYTHONPATH."
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"program_ref {ref!r}: {module_name} has no {attr_path!r}.") from None
    return obj


def build_program(ref: str, args: Mapping[str, Any] | None = None) -> Module:
    """Build a fresh program from its reference (before any state is loaded)."""
    target = resolve_ref(ref)
    if not callable(target):
        raise UserError(f"program_ref {ref!r} names a {type(target).__name__}, not a class.")
    try:
        program = target(**dict(args or {}))
    except TypeError as e:
        raise UserError(
            f"program_ref {ref!r} could not be called with no arguments ({e}). It must name a "
            "Module class whose __init__ needs no arguments, or a zero-argument factory "
            "function that returns the program; pass program_ref= when logging."
        ) from e
    if not isinstance(program, Module):
        raise UserError(
            f"program_ref {ref!r} returned a {type(program).__name__}, not a dspex.Module."
        )
    return program


def _check_rebuild(program: Module, ref: str, args: dict[str, Any], state: dict[str, Any]) -> None:
    """Fail at log time, not in a service at load time, if ``ref`` cannot take ``state``."""
    fresh = build_program(ref, args)
    try:
        # LM configs are left out: rebuilding clients is not needed to check the structure.
        fresh.load_state(without_lms(state))
    except DspexError as e:
        raise UserError(
            f"program_ref {ref!r} builds a program that cannot load this program's state: {e}"
        ) from e
    mine, theirs = dict(program.named_predictors()), dict(fresh.named_predictors())
    for name, predictor in mine.items():
        if _field_types(predictor.signature) != _field_types(theirs[name].signature):
            raise UserError(
                f"program_ref {ref!r} builds predictor {name!r} with signature "
                f"{theirs[name].signature.signature!r} typed differently from the program being "
                f"logged ({predictor.signature.signature!r}). Pass program_ref= naming a "
                "factory that builds this exact program."
            )


def _field_types(sig: Any) -> list[tuple[str, str, Any, dict[str, Any]]]:
    return [(n, f.kind, f.annotation, f.constraints) for n, f in sig.fields.items()]


def infer_fields(program: Module) -> tuple[tuple[tuple[str, bool], ...], tuple[str, ...]]:
    """The program's inputs as ``(name, required)`` and its output field names.

    A program whose ``forward`` takes only ``**kwargs`` has its one predictor's inputs
    (``Predict``, ``ChainOfThought``), or, with several predictors, the fields of the
    signature it declares as ``program.signature`` (``ReAct``); any other program has the
    named parameters of ``forward`` (or ``aforward``). Outputs are the output fields of that
    declared signature, else of the last predictor.
    """
    predictors = program.predictors()
    if not predictors:
        raise UserError(f"{type(program).__name__} has no predictors; there is nothing to log.")
    method = program.forward if type(program).forward is not Module.forward else program.aforward
    params = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    outputs = tuple(predictors[-1].signature.output_fields)
    if params:
        return tuple((p.name, p.default is p.empty) for p in params), outputs
    declared = getattr(program, "signature", None)
    if len(predictors) > 1 and isinstance(declared, type) and issubclass(declared, Signature):
        # A module that declares the task it does (ReAct: its predictors' signatures are
        # its own steps) takes that task's inputs and gives its outputs.
        return tuple((n, True) for n in declared.input_fields), tuple(declared.output_fields)
    if len(predictors) > 1:
        raise UserError(
            f"{type(program).__name__}.forward takes only **kwargs, so its inputs cannot be "
            "inferred; pass signature=mlflow.models.infer_signature(...) or a ModelSignature "
            "to log_model()."
        )
    return tuple((n, True) for n in predictors[0].signature.input_fields), outputs


# A LoRA adapter (``LM("local/...", adapter=DIR)``) travels inside the model directory; the
# saved config names it relative to that directory with this prefix.
BUNDLED = "dspex-model:"


def write_program_dir(packed: PackedProgram, directory: Path) -> None:
    """Write ``program.json`` and the manifest into ``directory``, with a copy of each local
    LoRA adapter a predictor's LM uses (so the model is complete on another machine)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = packed.text
    bundled = _bundle_adapters(packed.state, directory)
    if bundled is not None:
        text = json.dumps(bundled, indent=2, ensure_ascii=False, default=json_default)
    # Both files carry the sha256 manifest of Module.save files, checked on load.
    (directory / STATE_FILE).write_text(seal(json.loads(text)), encoding="utf-8")
    write_manifest(packed.manifest(), directory)
    bundle_retrievers(packed.retrievers, directory)


def write_manifest(manifest: Mapping[str, Any], directory: Path) -> None:
    """Write the sealed ``dspex.json`` (again, e.g. once the model's code digest is known)."""
    (directory / MANIFEST_FILE).write_text(seal(manifest), encoding="utf-8")


def read_manifest(directory: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The model's ``dspex.json``, checked against its sha256 manifest when ``verify``."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise DataError(
            f"{directory} is not a dspex model directory (no {MANIFEST_FILE}); log the "
            "program with dspex.mlflow.log_model()."
        )
    return read_sealed(path, verify=verify)


def load_program_dir(
    directory: str | Path,
    *,
    lm: Any = None,
    verify: bool = True,
    allowed_modules: Iterable[str] = (),
    code_dir: Path | None = None,
    embedder: Any = None,
) -> Module:
    """Rebuild the program stored in ``directory`` by :func:`write_program_dir`.

    Args:
        directory: the model's ``data/dspex`` directory.
        lm: if given, every predictor uses it instead of the LM it was saved with.
        verify: check both JSON files (and ``code_dir``) against the model's sha256
            manifest; ``False`` only for a model edited by hand, or logged before models
            were sealed, that you trust.
        allowed_modules: modules (and their submodules) the program reference may import
            besides dspex, already imported ones and the model's own ``code_dir``.
        code_dir: the model's ``code/`` directory (its ``code_paths``), if it has one.
        embedder: the embedder for the model's dense indexes (default: one built from the
            recorded model name with this process's endpoint and key).

    Raises:
        ProgramIntegrityError: a file was edited or has no manifest, or the program
            reference names anything but a ``dspex.Module`` it may import.
    """
    directory = Path(directory)
    manifest = read_manifest(directory, verify=verify)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(
            f"This dspex model was written in format {manifest.get('format')!r}; this dspex "
            f"reads format {MANIFEST_FORMAT}. Load it with the dspex version that logged it "
            f"({manifest.get('dspex_version')})."
        )
    if verify and manifest.get("code_sha256") != code_digest(code_dir):
        raise ProgramIntegrityError(
            f"{directory}: the model's code/ directory does not match its manifest (files "
            "were added, removed or edited after it was logged); nothing was loaded. Log the "
            "model again, or load it with verify=False if you trust the edit.",
            path=str(code_dir),
        )
    # The state file is always program.json: a file's own say is never a path to read.
    state = read_sealed(directory / STATE_FILE, verify=verify)
    program = build_trusted(
        manifest.get("program_ref"),
        manifest.get("program_args"),
        allowed_modules=allowed_modules,
        code_dir=code_dir,
        where=str(directory),
    )
    state = _unbundle_adapters(state, directory)
    # Indexes are rebuilt with this process's embedder, never an endpoint from the file.
    attach_retrievers(program, directory, manifest, embedder=embedder, verify=verify)
    if lm is not None:
        program.load_state(without_lms(state))
        program.set_lm(lm)
        return program
    # Endpoint settings (api_base, headers, transport, keys) in the state are never used:
    # Predict.load_predictor_state keeps this process's own (DESIGN.md, Trust boundaries).
    program.load_state(_rebuildable_lms(state))
    return program


def _bundle_adapters(state: Mapping[str, Any], directory: Path) -> dict[str, Any] | None:
    """Copy local adapter directories into ``directory/adapters``; the state pointing at the
    copies, or ``None`` when no predictor uses one."""
    import shutil

    predictors = dict(state.get("predictors") or {})
    changed = False
    for name, p in predictors.items():
        lm = p.get("lm")
        adapter = (lm or {}).get("kwargs", {}).get("adapter") if isinstance(lm, Mapping) else None
        if (
            not isinstance(adapter, str)
            or adapter.startswith(BUNDLED)
            or not Path(adapter).is_dir()
        ):
            continue
        rel = f"adapters/{name.replace('/', '_')}"
        shutil.copytree(adapter, directory / rel, dirs_exist_ok=True)
        kwargs = {**lm["kwargs"], "adapter": BUNDLED + rel}
        predictors[name] = {**p, "lm": {**lm, "kwargs": kwargs}}
        changed = True
    return {**state, "predictors": predictors} if changed else None


def _unbundle_adapters(state: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    """Point bundled adapters at a stable copy under the dspex cache directory (the model
    directory may be a temporary download), keyed by the adapter's content."""
    import hashlib
    import os
    import shutil

    from dspex.lm._cache import cache_directory

    predictors = dict(state.get("predictors") or {})
    for name, p in predictors.items():
        lm = p.get("lm")
        adapter = (lm or {}).get("kwargs", {}).get("adapter") if isinstance(lm, Mapping) else None
        if not isinstance(adapter, str) or not adapter.startswith(BUNDLED):
            continue
        source = directory / adapter.removeprefix(BUNDLED)
        digest = hashlib.sha256()
        for f in sorted(source.rglob("*")):
            if f.is_file():
                digest.update(f.relative_to(source).as_posix().encode())
                digest.update(f.read_bytes())
        target = cache_directory() / "adapters" / digest.hexdigest()[:24]
        if not target.exists():
            tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            try:
                tmp.rename(target)  # whole or not at all: a reader never sees half a copy
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another process got there first
        predictors[name] = {**p, "lm": {**lm, "kwargs": {**lm["kwargs"], "adapter": str(target)}}}
    return {**state, "predictors": predictors}


def _rebuildable_lms(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop LM configs that cannot be rebuilt from a file (a custom transport object, as the
    ``dspex.testing`` doubles use); those predictors use the LM configured in the context."""
    predictors: dict[str, Any] = {}
    for name, p in dict(state.get("predictors") or {}).items():
        lm = p.get("lm")
        custom = isinstance(lm, Mapping) and lm.get("transport") == "custom"
        predictors[name] = {**p, "lm": None} if custom else p
    return {**state, "predictors": predictors}
