"""Whole programs saved without pickle: ``save(dir, save_program=True)`` and ``dspex.load``.

DSPy's whole-program save is a cloudpickle of the program object; loading one runs whatever
code the file names. dspex saves the program's *state* and a reference to its class
(``module:Class``, plus the signature for the built-in ``Predict``/``ChainOfThought``) in one
sealed JSON file, ``<dir>/program.json``, and ``dspex.load`` builds the class only under the
trust rule of :mod:`dspex.primitives._trust` (a ``dspex.Module`` subclass from dspex, an
already imported module, or ``allowed_modules``) before loading the state into it. A user's
class must be constructible without arguments.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex.errors import DataError, DspexError, UserError
from dspex.primitives._program_file import seal, write_atomic
from dspex.primitives._trust import build_trusted, read_sealed

if TYPE_CHECKING:
    from dspex.lm import LM
    from dspex.primitives._module import Module

__all__ = ["PROGRAM_FILE", "load", "save_program", "without_lms"]

PROGRAM_FILE = "program.json"
_HINT = (
    "If you trust this directory (you edited program.json by hand on purpose), load it with "
    "dspex.load(path, verify=False), then save it again to seal it."
)


def save_program(program: Module, path: str | os.PathLike[str]) -> Path:
    """Write ``<path>/program.json``: the program's state and class reference, sealed."""
    directory = Path(path)
    if directory.suffix == ".json" or (directory.exists() and not directory.is_dir()):
        raise UserError(
            f"save({str(directory)!r}, save_program=True): a whole program is saved to a "
            "directory; pass a directory path (or save only the state to a .json file with "
            "save(path))."
        )
    if "<locals>" in type(program).__qualname__:
        raise UserError(
            f"save(..., save_program=True): {type(program).__qualname__} is defined inside a "
            "function, so dspex.load() could not import it. Define the class at module level, "
            "or save only the state with save(path.json)."
        )
    ref, args = program._rebuild_spec()
    state = program.dump_state()
    # Fail now, not at load time, if the reference cannot rebuild this program.
    try:
        fresh = build_trusted(ref, args, where=str(directory), loader="dspex.load()")
        fresh.load_state(without_lms(state))
    except DspexError as e:
        raise UserError(
            f"save({str(directory)!r}, save_program=True): {ref} cannot be rebuilt from the "
            f"saved file ({e}). A whole-program save needs a class that builds without "
            "arguments; otherwise save the state with save(path.json)."
        ) from e
    directory.mkdir(parents=True, exist_ok=True)
    body = {"program_ref": ref, "program_args": args, "state": state}
    write_atomic(directory / PROGRAM_FILE, seal(body))
    return directory


def without_lms(state: Mapping[str, Any]) -> dict[str, Any]:
    """Program state with every predictor's LM config left out: enough to check that a
    program of this structure takes the state, without rebuilding any client."""
    predictors = {
        name: {**p, "lm": None} for name, p in dict(state.get("predictors") or {}).items()
    }
    return {**state, "predictors": predictors}


def load(
    path: str | os.PathLike[str],
    *,
    allowed_modules: Iterable[str] = (),
    lm: LM | None = None,
    verify: bool = True,
) -> Module:
    """Load a whole program saved with ``program.save(path, save_program=True)``.

    The directory's ``program.json`` is checked against its sha256 manifest, then the class
    it names is built — only if it is a ``dspex.Module`` subclass from dspex, from a module
    this process already imported, or from ``allowed_modules`` — and the saved state is loaded
    into it. Nothing is unpickled: a directory DSPy saved with ``save_program=True`` (a
    pickle) is refused.

    Args:
        path: the directory ``save(path, save_program=True)`` wrote.
        allowed_modules: packages the program's class may be imported from when this
            process has not imported them yet, e.g. ``["my_project"]`` (also
            ``$DSPEX_ALLOWED_MODULES``, comma-separated).
        lm: the LM every predictor uses (otherwise see :meth:`dspex.Module.load`).
        verify: ``False`` skips the manifest check, for a file you edited by hand and trust.

    Raises:
        ProgramIntegrityError: the file was edited, or names anything but a Module subclass
            this loader may import; nothing was called.
        DataError: the directory holds no ``program.json`` (or a DSPy pickle).

    Example:
        >>> import dspex, tempfile
        >>> from dspex.testing import DummyLM
        >>> path = dspex.ChainOfThought("question -> answer").save(
        ...     tempfile.mkdtemp(), save_program=True)
        >>> program = dspex.load(path)
        >>> type(program).__name__
        'ChainOfThought'
    """
    directory = Path(path)
    where = str(directory)
    if not directory.is_dir():
        raise UserError(
            f"dspex.load({where!r}): expects the directory that "
            "program.save(path, save_program=True) wrote. For a .json state file, build the "
            "program and call program.load(path)."
        )
    state_file = directory / PROGRAM_FILE
    if not state_file.is_file():
        if (directory / "program.pkl").exists():
            raise DataError(
                f"dspex.load({where!r}): this is DSPy's whole-program save, a pickle; dspex "
                "never loads pickles (loading one runs code). In DSPy save the state instead "
                "(program.save('program.json')), then build the program with dspex and call "
                "program.load('program.json')."
            )
        raise DataError(
            f"dspex.load({where!r}): no {PROGRAM_FILE} in it; save the program with "
            "program.save(path, save_program=True)."
        )
    body = read_sealed(state_file, verify=verify, hint=_HINT)
    state = body.get("state")
    if not isinstance(state, dict):
        raise DataError(
            f"dspex.load({where!r}): {PROGRAM_FILE} holds no program state; save the program "
            "again with program.save(path, save_program=True)."
        )
    program = build_trusted(
        body.get("program_ref"),
        body.get("program_args"),
        allowed_modules=allowed_modules,
        where=where,
        loader="dspex.load()",
    )
    return program.load_state(state, lm=lm)
