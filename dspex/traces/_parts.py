"""Unreadable trace parts: finding them, skipping them with a warning, quarantining them.

A part can be damaged after it was written (a disk that filled up under a copy, a file
truncated by a sync tool, bytes overwritten): DuckDB then fails every query whose glob
matches it. Readers do not validate parts up front (that would re-read every footer on every
query); they catch DuckDB's error, look for the bad part(s) with :func:`find_bad_parts`,
warn with :class:`CorruptPartWarning` naming each file, and retry without them. What was
found good is remembered by ``(path, size, mtime)``, so a later failure checks only new
parts. ``compact`` moves bad parts into the run's ``quarantine/`` folder, where no reader
looks.

pyarrow is imported only inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

from dspex.errors import DataError

__all__ = [
    "QUARANTINE_DIR",
    "CorruptPartWarning",
    "TraceReadError",
    "find_bad_parts",
    "list_parts",
    "quarantine",
    "warn_skipped",
]

QUARANTINE_DIR = "quarantine"
"""The folder inside a run's directory that :func:`quarantine` moves bad parts to."""

_FOOTER, _FULL = 1, 2  # how far a part was verified: its footer, or every page
_MAX_REMEMBERED = 200_000
_lock = threading.Lock()
_verified: dict[str, tuple[int, int, int]] = {}  # path -> (size, mtime_ns, level)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep


class TraceReadError(DataError):
    """The traces could not be queried, and leaving out unreadable parts did not help.

    The message carries DuckDB's own error and says what to try next.
    """


class CorruptPartWarning(UserWarning):
    """A trace part could not be read and was left out of a query's answer.

    Attributes:
        path: the part's file.
        reason: what was wrong with it.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        run = path.parent.name.removeprefix("run_id=")
        super().__init__(
            f"dspex.traces: skipped the unreadable trace part {path} ({reason}); the answer "
            f"leaves out its rows. Move it aside with `dspex traces compact {run}`, which puts "
            f"it in {path.parent / QUARANTINE_DIR}."
        )

    def __reduce__(self) -> tuple[type[CorruptPartWarning], tuple[Path, str]]:
        return type(self), (self.path, self.reason)  # pickles (e.g. across processes)


def list_parts(runs_dir: Path) -> list[Path]:
    """Every part the ``traces`` view would read, sorted."""
    traces = runs_dir / "traces"
    if not traces.is_dir():
        return []
    return sorted(p for p in traces.glob("*/*.parquet") if p.is_file())


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _problem(path: Path, level: int) -> str | None:
    """What is wrong with a part at this level of checking, or ``None``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if level == _FOOTER:
            pq.read_metadata(path)
        else:
            pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as e:
        # Arrow's messages can span lines; the first says what it is.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return first[:300]
    return None


def find_bad_parts(parts: Iterable[Path], *, full: bool) -> dict[Path, str]:
    """The parts that cannot be read, each with the reason.

    ``full=False`` reads each part's footer (cheap); ``full=True`` reads every page, which
    catches damage inside the data too. A part verified before at this level, and unchanged
    since (same size and mtime), is not read again.
    """
    level = _FULL if full else _FOOTER
    bad: dict[Path, str] = {}
    for path in parts:
        stamp = _stamp(path)
        if stamp is None:  # gone meanwhile (compacted): nothing to skip
            continue
        key = str(path)
        with _lock:
            known = _verified.get(key)
        if known is not None and known[:2] == stamp and known[2] >= level:
            continue
        problem = _problem(path, level)
        if problem is not None:
            bad[path] = problem
            continue
        with _lock:
            if len(_verified) >= _MAX_REMEMBERED:
                _verified.clear()
            _verified[key] = (*stamp, level)
    return bad


def quarantine(part: Path) -> Path:
    """Move a part into its run's ``quarantine/`` folder, out of every reader's glob."""
    folder = part.parent / QUARANTINE_DIR
    folder.mkdir(exist_ok=True)
    target = folder / part.name
    os.replace(part, target)
    with _lock:
        _verified.pop(str(part), None)
    return target


def warn_skipped(bad: dict[Path, str]) -> None:
    """One :class:`CorruptPartWarning` per skipped part, attributed to the caller's code."""
    level = _caller_level()
    for path, reason in bad.items():
        warnings.warn(CorruptPartWarning(path, reason), stacklevel=level)


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside dspex, seen from ``warn_skipped``."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level
