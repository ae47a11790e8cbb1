"""SQL over the trace Parquet with DuckDB: a ``traces`` view, queried in memory.

The view reads ``<runs_dir>/traces/*/*.parquet`` with hive partitioning, so every row has a
``run_id`` column (``VARCHAR``) taken from its ``run_id=<id>`` directory, and by column name,
so files from older writers with fewer columns still read (their missing columns are NULL).
A part DuckDB cannot read is left out with a warning rather than failing every query (see
``_parts.py``); the fast path adds nothing to a query when every part is fine.

duckdb and pyarrow are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dspex import _paths
from dspex.errors import UserError
from dspex.traces._parts import TraceReadError, find_bad_parts, list_parts, warn_skipped
from dspex.traces._schema import COLUMNS, DUCKDB_TYPES

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["connect", "run_query", "sql", "to_arrow"]

Params = Sequence[Any] | Mapping[str, Any] | None
_T = TypeVar("_T")


def _error_types() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    import duckdb

    mistakes = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)
    # The query's own values that do not fit (a failed cast, an overflow): not the files.
    data = (duckdb.DataError, duckdb.InvalidTypeException)
    return mistakes, data


def _glob(runs_dir: Path) -> str:
    return str(runs_dir / "traces" / "*" / "*.parquet")


def _has_parts(runs_dir: Path) -> bool:
    traces = runs_dir / "traces"
    return traces.is_dir() and any(traces.glob("*/*.parquet"))


def _literal(text: str) -> str:
    # CREATE VIEW cannot take bound parameters, so the path is quoted as a SQL literal.
    return "'" + text.replace("'", "''") + "'"


def _view_sql(runs_dir: Path, skipped: Collection[Path]) -> str:
    # Every column, typed, from an empty relation: the view has the current schema's columns
    # even before the first flush (read_parquet fails on a glob that matches nothing) and
    # when every part is older and lacks the newer columns (UNION BY NAME fills in NULL).
    cols = [f"CAST(NULL AS {DUCKDB_TYPES[c]}) AS {c}" for c in COLUMNS]
    cols.append("CAST(NULL AS VARCHAR) AS run_id")
    view = f"CREATE OR REPLACE VIEW traces AS SELECT {', '.join(cols)} WHERE false"
    if skipped:
        # A fixed list of the good parts: DuckDB's globs cannot leave files out.
        files = [p for p in list_parts(runs_dir) if p not in skipped]
        if not files:
            return view
        source = "[" + ", ".join(_literal(str(p)) for p in files) + "]"
    elif _has_parts(runs_dir):
        source = _literal(_glob(runs_dir))
    else:
        return view
    return (
        f"{view} UNION ALL BY NAME SELECT * FROM read_parquet({source}, hive_partitioning = "
        "true, union_by_name = true, hive_types = {'run_id': 'VARCHAR'})"
    )


class _Traces:
    """A connection with the ``traces`` view, and the unreadable parts the view leaves out."""

    def __init__(self, runs_dir: Path) -> None:
        import duckdb

        self.runs_dir = runs_dir
        self.skipped: dict[Path, str] = {}
        self._defined_for: frozenset[Path] | None = None
        self.con = duckdb.connect(":memory:")
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            self.run(lambda: None)
        except BaseException:
            self.con.close()
            raise

    def run(self, step: Callable[[], _T]) -> _T:
        """(Re)define the view if needed, then ``step()``; skip bad parts and retry on error."""
        import duckdb

        mistakes, data = _error_types()
        relisted = False
        while True:
            try:
                key = frozenset(self.skipped)
                if self._defined_for != key:
                    self.con.execute(_view_sql(self.runs_dir, key))
                    self._defined_for = key
                return step()
            except mistakes as e:
                raise UserError(
                    f"The trace query failed: {e}\nQuery the view `traces`; its columns are "
                    f"run_id, {', '.join(COLUMNS)}."
                ) from e
            except data as e:
                raise UserError(f"The trace query failed on the data: {e}") from e
            except duckdb.Error as e:
                if self._skip_bad_parts():
                    continue
                if isinstance(e, duckdb.IOException) and not relisted:
                    # A part listed by the query was gone when read (compact replaced the
                    # run's parts meanwhile): the directory has changed, so ask again once.
                    relisted = True
                    self._defined_for = None  # a view of listed parts is listed anew
                    continue
                raise _read_error(e, self.runs_dir, self.skipped) from e

    def _skip_bad_parts(self) -> bool:
        """Find unreadable parts not yet skipped: footers first, then every page."""
        parts = [p for p in list_parts(self.runs_dir) if p not in self.skipped]
        for full in (False, True):
            bad = find_bad_parts(parts, full=full)
            if bad:
                self.skipped.update(bad)
                warn_skipped(bad)
                return True
        return False


def _read_error(error: Exception, runs_dir: Path, skipped: Mapping[Path, str]) -> TraceReadError:
    left_out = f" (after leaving out {len(skipped)} unreadable part(s))" if skipped else ""
    return TraceReadError(
        f"The traces under {runs_dir / 'traces'} could not be queried{left_out}: {error}\n"
        "Every part's Parquet footer and pages read fine, so the cause is elsewhere: check the "
        "query, free memory or disk, and file permissions; `dspex traces compact RUN_ID` "
        "rewrites a run's parts and quarantines any it cannot read."
    )


def connect(runs_dir: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a ``traces`` view over the runs directory.

    The view re-reads the directory on every query, so it sees parts written after
    ``connect``. Two exceptions: when the directory held no trace file yet, the view is an
    empty table with the right columns; and when a part was unreadable, the view lists the
    readable parts of that moment (with a :class:`~dspex.traces.CorruptPartWarning` naming
    the bad one). Connect again to see new parts then. Queries through this connection get
    DuckDB's own errors; :func:`sql` and :func:`~dspex.traces.report` also skip parts
    damaged inside their data, and raise dspex errors.

    A DuckDB connection runs one query at a time and keeps one open result: give each thread
    its own cursor (``con.cursor()``), which shares the view.

    Timestamps are ``TIMESTAMP WITH TIME ZONE`` and the session time zone is UTC.

    Args:
        runs_dir: the runs directory; ``None`` means ``$DSPEX_RUNS_DIR`` or ``./dspex-runs``.

    Raises:
        TraceReadError: the traces could not be read even without the unreadable parts.

    Example:
        >>> import tempfile
        >>> from dspex.traces import connect
        >>> con = connect(tempfile.mkdtemp())
        >>> con.sql("SELECT count(*) FROM traces").fetchall()
        [(0,)]
    """
    return _Traces(_paths.runs_dir(runs_dir)).con


def to_arrow(relation: duckdb.DuckDBPyRelation | None) -> pa.Table:
    """A DuckDB relation's rows as a ``pyarrow.Table`` (empty for a statement with none)."""
    import pyarrow as pa

    if relation is None:
        return pa.table({})
    # duckdb 1.4 added to_arrow_table; 2.0 deprecates fetch_arrow_table and makes arrow()
    # return a RecordBatchReader.
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


def sql(
    query: str, runs_dir: str | os.PathLike[str] | None = None, params: Params = None
) -> pa.Table:
    """Run one SQL query against the ``traces`` view and return the result as Arrow.

    Bind values with ``?`` or ``$name`` placeholders and ``params`` rather than formatting
    them into the query. The query is ordinary DuckDB SQL with this process's file access
    (it may join the traces with a CSV of scores, say), so never pass it untrusted text.

    A part that cannot be read (truncated, overwritten) is left out of the answer with a
    :class:`~dspex.traces.CorruptPartWarning` naming the file; the other parts still answer.

    Args:
        query: the SQL; the view is called ``traces``.
        runs_dir: the runs directory; ``None`` means ``$DSPEX_RUNS_DIR`` or ``./dspex-runs``.
        params: values for the query's placeholders.

    Raises:
        UserError: the query does not parse, names an unknown table or column, or fails on
            the data (a cast that does not fit, say).
        TraceReadError: the traces could not be read even without the unreadable parts.

    Example:
        >>> import tempfile
        >>> from dspex.traces import sql
        >>> sql("SELECT count(*) AS n FROM traces WHERE stage = ?", tempfile.mkdtemp(),
        ...     ["bootstrap"]).to_pylist()
        [{'n': 0}]
    """
    return run_query(query, runs_dir, params)


def run_query(query: str, runs_dir: str | os.PathLike[str] | None, params: Params) -> pa.Table:
    """:func:`sql` without the docs: one fresh connection, one query, skipping bad parts."""
    traces = _Traces(_paths.runs_dir(runs_dir))
    try:
        return traces.run(lambda: to_arrow(traces.con.sql(query, params=params)))
    finally:
        traces.con.close()
