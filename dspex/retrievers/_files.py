"""Saving a retriever's index as a directory, atomically: written under a temporary name
beside the target, then renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dspex._jsonable import loads
from dspex.errors import DataError, UserError

__all__ = ["read_config", "save_directory"]

CONFIG = "config.json"


def save_directory(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(temp_dir)``, then swap ``temp_dir`` into ``path``: an existing index there
    is moved aside first and removed after, so ``path`` is always a whole index (or, for an
    instant, absent). A directory that is not a saved index is never replaced."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(temp)
        old = None
        if target.exists():
            if not (target / CONFIG).is_file() and any(target.iterdir()):
                raise UserError(
                    f"{target} exists and is not a saved index; save to a new or empty directory."
                )
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(temp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def read_config(directory: Path, form: str, version: int, what: str) -> dict[str, Any]:
    """The saved index's ``config.json``, checked to be ``form`` at ``version``."""
    path = directory / CONFIG
    try:
        config = loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{directory} is not a saved {what} index (no {CONFIG}).") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is unreadable ({e}).") from None
    if not isinstance(config, dict) or config.get("format") != form:
        raise DataError(f"{path} is not a saved dspex {what} index.")
    if config.get("version") != version:
        raise DataError(
            f"{path} has format version {config.get('version')}; this dspex reads {version}."
        )
    if not isinstance(config.get("corpus"), list):
        raise DataError(f"{path} is missing its corpus; save it again.")
    return config
