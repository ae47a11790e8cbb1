"""A saved program file: the program's state as readable JSON, sealed by a sha256 manifest.

The manifest is one more top-level key of the same file::

    "manifest": {"algorithm": "sha256", "sha256": "<64 hex digits>", "covers": "..."}

The digest is over :func:`dspex._jsonable.canonical_json` of every other top-level key, so
re-indenting the file leaves it valid while any edit to a value (an instruction, a demo, a
flipped byte) does not. It detects edits and damage; it is not a signature (whoever can write
the file can recompute it), which is why nothing in the file decides where prompts go (see
``Predict.load_predictor_state``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dspex._jsonable import canonical_json, json_default
from dspex.errors import DataError, ProgramIntegrityError, UserError

__all__ = ["MANIFEST_KEY", "read_program_file", "seal", "verify_manifest", "write_atomic"]

MANIFEST_KEY = "manifest"
_ALGORITHM = "sha256"
_COVERS = "dspex._jsonable.canonical_json of every top-level key except 'manifest'"
_PICKLE_PROTO = b"\x80"  # the first byte of every pickle of protocol 2 or later


def _digest(body: Mapping[str, Any]) -> str:
    try:
        return hashlib.sha256(canonical_json(body)).hexdigest()
    except TypeError as e:  # orjson: an integer beyond 64 bits
        raise DataError(f"A program state value has no canonical JSON form ({e}).") from None


def seal(state: Mapping[str, Any]) -> str:
    """The file's text: ``state`` as indented JSON, with a manifest of its digest."""
    # Hash the state as a reader will parse it back, so the writer and reader agree exactly.
    body = json.loads(json.dumps(state, ensure_ascii=False, default=json_default))
    body.pop(MANIFEST_KEY, None)
    manifest = {"algorithm": _ALGORITHM, "sha256": _digest(body), "covers": _COVERS}
    return json.dumps({**body, MANIFEST_KEY: manifest}, indent=2, ensure_ascii=False)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename: readers see the old file
    or the new one, never half of one, and a crash leaves no partial file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_program_file(path: str | os.PathLike[str], *, verify: bool) -> dict[str, Any]:
    """The parsed top-level object of a program file (manifest included, not yet checked)."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"load({name!r}): no such file.") from None
    except OSError as e:
        raise DataError(f"load({name!r}): cannot read it ({e.strerror or e}).") from None
    try:
        state = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        if verify and b'"manifest"' in raw:
            raise ProgramIntegrityError(
                f"load({name!r}): the file is damaged ({e}); it no longer parses as the JSON "
                "that program.save() wrote. Nothing was loaded; save the program again from "
                "its source.",
                path=name,
            ) from None
        hint = (
            " It looks like a pickle; dspex never loads pickles."
            if raw.startswith(_PICKLE_PROTO)
            else ""
        )
        raise DataError(
            f"load({name!r}): not a dspex program file ({type(e).__name__}: {e}).{hint} "
            "Load a JSON file written by program.save()."
        ) from None
    if not isinstance(state, dict):
        raise DataError(
            f"load({name!r}): not a dspex program file (its JSON is a {type(state).__name__}, "
            "not an object). Load a JSON file written by program.save()."
        )
    return state


def verify_manifest(state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise :class:`ProgramIntegrityError` unless ``state`` matches its manifest."""
    name = str(path)
    manifest = state.get(MANIFEST_KEY)
    if manifest is None:
        raise ProgramIntegrityError(
            f"load({name!r}): the file has no manifest, so dspex cannot tell whether it was "
            "edited since it was saved (dspex 0.1.0 and earlier saved none). If you trust "
            "this file, load it with load(path, verify=False), then save() it again to add one.",
            path=name,
        )
    if (
        not isinstance(manifest, Mapping)
        or manifest.get("algorithm") != _ALGORITHM
        or not isinstance(manifest.get("sha256"), str)
    ):
        raise ProgramIntegrityError(
            f"load({name!r}): its manifest is not one this dspex reads (expected "
            f'{{"algorithm": "sha256", "sha256": "<hex>"}}). Nothing was loaded; save the '
            "program again with program.save().",
            path=name,
        )
    body = {k: v for k, v in state.items() if k != MANIFEST_KEY}
    actual, expected = _digest(body), str(manifest["sha256"])
    if not hmac.compare_digest(actual.encode(), expected.lower().encode()):
        raise ProgramIntegrityError(
            f"load({name!r}): the program does not match its manifest (sha256 "
            f"{actual[:12]}... != {expected[:12]}...): it was edited or damaged after it was "
            "saved, and nothing was loaded. Save it again from its source with program.save(); "
            "for a file you edited by hand on purpose, load it with load(path, verify=False).",
            path=name,
        )
