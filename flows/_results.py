"""Persisted task results that are read as JSON only.

A Prefect result file names its own serializer in its metadata, and Prefect deserializes it
with that serializer: a file rewritten to ``"type": "pickle"`` would run code on the next
cache lookup, and even a ``"json"`` serializer may name its own ``jsonlib``, object hook and
``__class__`` imports. Prefect reads every record through its storage block's ``read_path``
(the cache lookup ``exists`` as well as ``read``), so this block checks the bytes there,
before Prefect looks at the serializer: the record must use Prefect's default JSON
serializer, unchanged, and name only classes already imported from dspex (or a few stdlib
value types). A refused file reads as missing: the task runs again, overwrites it with a
fresh JSON record, and a warning names the file.

Local runs get this storage from ``flows/local.py``. A deployment run starts on a worker with
Prefect's own storage (``PREFECT_LOCAL_STORAGE_PATH``); the deployment flows hand
:func:`run_storage`, the same folder read as JSON only, to their subflows and tasks.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import cache
from pathlib import Path
from typing import Any, cast

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import LocalFileSystem

from dspex.errors import ConfigurationError, DspexError

__all__ = [
    "JsonOnlyResults",
    "UnsafeResultError",
    "check_record",
    "json_only_storage",
    "run_storage",
]

_log = logging.getLogger("dspex.flows")

# Value types Prefect's JSON encoder tags with ``__class__`` that carry no behaviour.
_STDLIB_CLASSES = frozenset(
    {
        "datetime.date",
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "decimal.Decimal",
        "pathlib.Path",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "uuid.UUID",
    }
)


class UnsafeResultError(DspexError):
    """A persisted result file that dspex refuses to deserialize."""


@cache
def _json_serializer() -> dict[str, Any]:
    from prefect.serializers import JSONSerializer

    dumped: dict[str, Any] = JSONSerializer().model_dump(mode="json")
    return dumped


def _loaded(name: str) -> Any:
    """The object ``name`` names, from modules already imported (nothing is imported)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None:
            obj: Any = module
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            return obj
    return None


def _allowed_class(name: str) -> bool:
    if name in _STDLIB_CLASSES:
        return True
    if not (name.startswith("dspex.") and isinstance(obj := _loaded(name), type)):
        return False
    from dataclasses import is_dataclass

    from pydantic import BaseModel

    return issubclass(obj, BaseModel) or is_dataclass(obj)


def _allowed_exception(name: str) -> bool:
    obj = _loaded(name if "." in name else f"builtins.{name}")
    inside = name.startswith(("builtins.", "dspex.")) or "." not in name
    return inside and isinstance(obj, type) and issubclass(obj, Exception)


def _check_tags(value: Any) -> str | None:
    """Why the decoded result may not be handed to Prefect's object hook, if it may not."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            cls = item.get("__class__")
            if cls is not None and not (isinstance(cls, str) and _allowed_class(cls)):
                return f"it names the class {cls!r}"
            exc = item.get("__exc_type__")
            if exc is not None and not (isinstance(exc, str) and _allowed_exception(exc)):
                return f"it names the exception type {exc!r}"
            stack.extend(item.values())
    return None


def check_record(content: bytes) -> str | None:
    """Why a result file's bytes are refused, or None when Prefect may deserialize them."""
    try:
        record = json.loads(content)
    except ValueError:
        return "it is not a JSON result record"
    if not isinstance(record, dict) or not isinstance(record.get("metadata"), dict):
        return "it is not a JSON result record"
    serializer = record["metadata"].get("serializer")
    if serializer != _json_serializer():
        kind = serializer.get("type") if isinstance(serializer, dict) else serializer
        if kind != "json":
            return f"its serializer is {kind!r}, not JSON"
        return "its JSON serializer names its own library, hooks or arguments"
    result = record.get("result")
    if not isinstance(result, str):
        return "its result is not JSON text"
    try:
        decoded = json.loads(result)
    except ValueError:
        return "its result is not JSON"
    return _check_tags(decoded)


class JsonOnlyResults(LocalFileSystem):
    """Prefect's local file system block, for result records that it reads as JSON only."""

    _block_type_name = "dspex JSON-only results"
    _block_type_slug = "dspex-json-only-results"
    _description = "Local task results that dspex reads only as plain JSON records."

    def _checked(self, path: str, content: bytes) -> bytes:
        reason = check_record(content)
        if reason is None:
            return content
        where = self._resolve_path(path)
        _log.warning(
            "Ignoring the persisted result %s: %s. The task runs again and overwrites it.",
            where,
            reason,
        )
        raise UnsafeResultError(f"Refused to read the persisted result {where}: {reason}.")

    async def aread_path(self, path: str) -> bytes:
        return self._checked(path, await super().aread_path(path))

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:  # type: ignore[override]  # as LocalFileSystem's
        content = super().read_path(path, _sync=True)  # type: ignore[call-arg]
        return self._checked(path, cast(bytes, content))


def json_only_storage(path: Path) -> JsonOnlyResults:
    """The saved block (Prefect wants result storage saved) for the results under ``path``,
    created owner-only."""
    import hashlib

    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    basepath = str(path.resolve())
    name = f"dspex-results-{hashlib.sha256(basepath.encode()).hexdigest()[:16]}"
    # Saved by an earlier run against this server: loading it is one API call, saving
    # registers the block's type and schema again first (~3x longer, before the flow starts).
    found = _saved(name, basepath)
    if found is not None:
        return found
    block = JsonOnlyResults(basepath=basepath)
    block.save(name, overwrite=True)
    return block


def _saved(name: str, basepath: str) -> JsonOnlyResults | None:
    """The block saved under ``name`` if it is this folder's; None if there is none (or it
    cannot be read as this version's block: it is saved again)."""
    try:
        block = JsonOnlyResults.load(name)
    except Exception:  # missing, or saved by another version (its schema): saved anew
        return None
    if not isinstance(block, JsonOnlyResults) or block.basepath != basepath:
        return None
    return block


def run_storage() -> JsonOnlyResults:
    """The current flow run's result storage, read as JSON only: the run's own when it is
    already (a local run), else a JSON-only block over the same folder (a deployment run on
    a worker, whose storage is Prefect's local one). Storage that is not a local folder is
    refused: dspex cannot check what it reads back."""
    from prefect.results import get_result_store

    storage = get_result_store().result_storage
    if isinstance(storage, JsonOnlyResults):
        return storage
    if isinstance(storage, LocalFileSystem) and storage.basepath:
        return json_only_storage(Path(storage.basepath))
    kind = type(storage).__name__ if storage is not None else "none"
    raise ConfigurationError(
        f"The flow run's result storage is {kind}, not a local folder: dspex reads persisted "
        "task results only from a folder it checks as JSON (a pickle-typed result would run "
        "code). Point PREFECT_LOCAL_STORAGE_PATH at a folder the workers share (a network "
        "mount) instead of a result storage block."
    )
