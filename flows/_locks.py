"""Locks between the processes of one run: a file lock on this machine, an advisory lock
on a shared PostgreSQL database."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy

__all__ = ["advisory_lock", "engine_for", "file_lock"]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads) on this machine, on any OS."""
    from filelock import FileLock

    # A new lock object per call: two threads of one process exclude each other too (one
    # object shared between threads would let the second in as a re-entry).
    with FileLock(path):
        yield


@functools.cache
def engine_for(url: str) -> sqlalchemy.Engine:
    """One engine (one connection pool) per database URL for the life of the process: an
    engine per lock would leave a pool of open connections behind each time."""
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_pre_ping=True)


@contextmanager
def advisory_lock(url: str, key: int) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock, held on a connection of ``url``'s engine."""
    import sqlalchemy

    with engine_for(url).connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
