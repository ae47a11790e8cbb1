"""SQL over the trace Parquet with DuckDB: a ``traces`` view, queried in memory.

The view reads ``<runs_dir>/traces/*/*.parquet`` with hive partitioning, so every row has a
``run_id`` column (``VARCHAR``) taken from its ``run_id=<id>`` directory, and with
``union_by_name`` so files from older writers with fewer columns still read.

duckdb and pyarrow are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex import _paths
from dspex.errors import UserError
from dspex.traces._schema import COLUMNS, DUCKDB_TYPES

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["connect", "query_arrow", "sql", "to_arrow"]

Params = Sequence[Any] | Mapping[str, Any] | None


def _glob(runs_dir: Path) -> str:
    return str(runs_dir / "traces" / "*" / "*.parquet")


def _has_parts(runs_dir: Path) -> bool:
    traces = runs_dir / "traces"
    return traces.is_dir() and any(traces.glob("*/*.parquet"))


def _literal(text: str) -> str:
    # CREATE VIEW cannot take bound parameters, so the path is quoted as a SQL literal.
    return "'" + text.replace("'", "''") + "'"


def _view_sql(runs_dir: Path) -> str:
    if not _has_parts(runs_dir):
        # read_parquet fails on a glob that matches nothing, so before the first flush the
        # view is an empty relation with the same columns and types.
        cols = [f"CAST(NULL AS {DUCKDB_TYPES[c]}) AS {c}" for c in COLUMNS]
        cols.append("CAST(NULL AS VARCHAR) AS run_id")
        return f"CREATE VIEW traces AS SELECT {', '.join(cols)} WHERE false"
    return (
        "CREATE VIEW traces AS SELECT * FROM read_parquet("
        f"{_literal(_glob(runs_dir))}, hive_partitioning = true, union_by_name = true, "
        "hive_types = {'run_id': 'VARCHAR'})"
    )


def connect(runs_dir: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a ``traces`` view over the runs directory.

    The view re-reads the directory on every query, so it sees parts written after
    ``connect``. One exception: when the directory held no trace file yet, the view is an
    empty table with the right columns; connect again once a run has flushed.

    A DuckDB connection runs one query at a time and keeps one open result: give each thread
    its own cursor (``con.cursor()``), which shares the view.

    Timestamps are ``TIMESTAMP WITH TIME ZONE`` and the session time zone is UTC.

    Args:
        runs_dir: the runs directory; ``None`` means ``$DSPEX_RUNS_DIR`` or ``./dspex-runs``.

    Example:
        >>> import tempfile
        >>> from dspex.traces import connect
        >>> con = connect(tempfile.mkdtemp())
        >>> con.sql("SELECT count(*) FROM traces").fetchall()
        [(0,)]
    """
    import duckdb

    root = _paths.runs_dir(runs_dir)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(_view_sql(root))
    return con


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

    Args:
        query: the SQL; the view is called ``traces``.
        runs_dir: the runs directory; ``None`` means ``$DSPEX_RUNS_DIR`` or ``./dspex-runs``.
        params: values for the query's placeholders.

    Raises:
        UserError: the query does not parse or names an unknown table or column.

    Example:
        >>> import tempfile
        >>> from dspex.traces import sql
        >>> sql("SELECT count(*) AS n FROM traces WHERE stage = ?", tempfile.mkdtemp(),
        ...     ["bootstrap"]).to_pylist()
        [{'n': 0}]
    """
    con = connect(runs_dir)
    try:
        return query_arrow(con, query, params)
    finally:
        con.close()


def query_arrow(con: duckdb.DuckDBPyConnection, query: str, params: Params = None) -> pa.Table:
    """Run ``query`` on ``con`` as Arrow; a query mistake becomes a ``UserError`` that says so."""
    import duckdb

    try:
        return to_arrow(con.sql(query, params=params))
    except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as e:
        raise UserError(
            f"The trace query failed: {e}\nQuery the view `traces`; its columns are run_id, "
            f"{', '.join(COLUMNS)}."
        ) from e
