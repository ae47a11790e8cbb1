"""Traces: every LM call and module call as a row in Parquet, queryable with DuckDB.

Rows live under ``<runs_dir>/traces/run_id=<id>/part-*.parquet`` (schema: :data:`COLUMNS`,
:func:`trace_schema`). :class:`TraceWriter` writes them crash-safely; :func:`connect` and
:func:`sql` query them through a DuckDB view called ``traces``; :func:`report` computes the
named reports (``cost``, ``latency``, ``errors``, ``cache``). A part that cannot be read is
left out of answers with a :class:`CorruptPartWarning`; :func:`compact` moves it to the run's
``quarantine/`` folder.

Importing this package imports neither pyarrow nor duckdb; they load on first use.

Example:
    >>> import tempfile
    >>> import dspex.traces
    >>> dspex.traces.sql("SELECT count(*) AS rows FROM traces", tempfile.mkdtemp()).to_pylist()
    [{'rows': 0}]
"""

from dspex.traces._parts import CorruptPartWarning, TraceReadError
from dspex.traces._query import connect, sql
from dspex.traces._recorder import TraceRecorder, new_run_id, record
from dspex.traces._reports import REPORTS, report, runs
from dspex.traces._schema import COLUMNS, SCHEMA_VERSION, trace_schema
from dspex.traces._store import (
    CompactionResult,
    TraceWriter,
    compact,
    default_runs_dir,
    validate_run_id,
)

__all__ = [
    "COLUMNS",
    "REPORTS",
    "SCHEMA_VERSION",
    "CompactionResult",
    "CorruptPartWarning",
    "TraceReadError",
    "TraceRecorder",
    "TraceWriter",
    "compact",
    "connect",
    "default_runs_dir",
    "new_run_id",
    "record",
    "report",
    "runs",
    "sql",
    "trace_schema",
    "validate_run_id",
]
