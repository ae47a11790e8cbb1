"""The trace row schema, version 2: one row per LM call, failed LM attempt, module call, tool
call, retrieval or embedding batch (``kind``: ``lm``, ``lm_attempt``, ``module``, ``tool``,
``retrieve``, ``embed``). A new kind is a new value, not a new column: it keeps the version
(``retrieve`` rows carry their query in ``inputs`` and the passage ids, scores and texts
in ``outputs``, as JSON).

A row reaches :class:`~dspex.traces.TraceWriter` as a plain ``dict`` whose keys are
:data:`COLUMNS`. Two columns accept more than one Python shape, so that the recorder can pass
what it has without converting on the LM hot path:

- ``labels``: a ``dict`` or a sequence of ``(key, value)`` pairs; keys and non-``None`` values
  are stored as strings (``{"trial": 12}`` is stored as ``{"trial": "12"}``).
- ``started_at`` / ``ended_at``: epoch seconds as a ``float`` (``time.time()``) or a
  ``datetime``; a naive ``datetime`` is taken to be UTC. Both are stored as
  ``timestamp[us, tz=UTC]``.

Version 2 added ``attempt``, ``status`` and ``http_status`` (all nullable, so a row dict may
leave them out). Version 1 files stay readable: queries read parts by column name and fill the
missing columns with ``NULL``, and compaction upgrades them.

``run_id`` is not a column of the files: it is the hive partition directory
``run_id=<id>`` and appears as a ``VARCHAR`` column when the traces are queried.

pyarrow is imported only inside :func:`trace_schema`, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "COLUMNS",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
    "trace_schema",
]

SCHEMA_VERSION = 2
READABLE_VERSIONS: frozenset[int] = frozenset({1, 2})
"""Schema versions this dspex reads and compacts (older ones miss columns, read as NULL)."""
# Parquet key-value metadata key; its value is str(SCHEMA_VERSION).
SCHEMA_VERSION_KEY = "dspex.trace_schema_version"


class _Column(NamedTuple):
    name: str
    arrow: str  # a key of _arrow_types()
    nullable: bool
    duckdb: str


_SPEC: tuple[_Column, ...] = (
    _Column("span_id", "string", False, "VARCHAR"),
    _Column("parent_span_id", "string", True, "VARCHAR"),
    _Column("kind", "string", False, "VARCHAR"),
    _Column("stage", "string", True, "VARCHAR"),
    _Column("trial", "int64", True, "BIGINT"),
    _Column("labels", "labels", False, "MAP(VARCHAR, VARCHAR)"),
    _Column("module_path", "string", True, "VARCHAR"),
    _Column("module_class", "string", True, "VARCHAR"),
    _Column("predictor", "string", True, "VARCHAR"),
    _Column("signature", "string", True, "VARCHAR"),
    _Column("model", "string", True, "VARCHAR"),
    _Column("inputs", "string", True, "VARCHAR"),
    _Column("messages", "string", True, "VARCHAR"),
    _Column("response", "string", True, "VARCHAR"),
    _Column("outputs", "string", True, "VARCHAR"),
    _Column("prompt_tokens", "int64", False, "BIGINT"),
    _Column("completion_tokens", "int64", False, "BIGINT"),
    _Column("cost", "float64", True, "DOUBLE"),
    _Column("latency_ms", "float64", False, "DOUBLE"),
    _Column("cache_hit", "bool", False, "BOOLEAN"),
    _Column("rollout_id", "string", True, "VARCHAR"),
    _Column("attempt", "int64", True, "BIGINT"),
    _Column("status", "string", True, "VARCHAR"),
    _Column("http_status", "int64", True, "BIGINT"),
    _Column("error_type", "string", True, "VARCHAR"),
    _Column("error_message", "string", True, "VARCHAR"),
    _Column("started_at", "timestamp", False, "TIMESTAMP WITH TIME ZONE"),
    _Column("ended_at", "timestamp", False, "TIMESTAMP WITH TIME ZONE"),
)

COLUMNS: tuple[str, ...] = tuple(c.name for c in _SPEC)
"""The column names of a trace row, in file order."""

REQUIRED: frozenset[str] = frozenset(c.name for c in _SPEC if not c.nullable)
"""Columns that may not be ``None``."""

TEXT_COLUMNS: tuple[str, ...] = ("inputs", "messages", "response", "outputs", "error_message")
"""String columns that may carry user or provider text, and so are redacted on write."""

TIMESTAMP_COLUMNS: tuple[str, ...] = ("started_at", "ended_at")

DUCKDB_TYPES: Mapping[str, str] = {c.name: c.duckdb for c in _SPEC}
"""How DuckDB sees each column (used to type the empty ``traces`` view)."""


def _arrow_types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "labels": pa.map_(pa.string(), pa.string()),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }


@functools.cache
def trace_schema() -> pa.Schema:
    """The Arrow schema of trace files, with the schema version in its metadata.

    Example:
        >>> from dspex.traces import trace_schema
        >>> schema = trace_schema()
        >>> str(schema.field("started_at").type)
        'timestamp[us, tz=UTC]'
        >>> schema.metadata[b"dspex.trace_schema_version"]
        b'2'
    """
    import pyarrow as pa

    types = _arrow_types()
    fields = [pa.field(c.name, types[c.arrow], nullable=c.nullable) for c in _SPEC]
    return pa.schema(fields, metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION)})


def check_row(row: Mapping[str, Any]) -> list[str]:
    """What is wrong with a row's keys (empty when nothing); values are checked on write.

    Example:
        >>> check_row({"span_id": "a"})[0]
        'missing required column(s): cache_hit, completion_tokens, ...'
    """
    problems = []
    missing = sorted(REQUIRED - row.keys())
    if missing:
        shown = ", ".join(missing[:2]) + (", ..." if len(missing) > 2 else "")
        problems.append(f"missing required column(s): {shown}")
    unknown = sorted(row.keys() - set(COLUMNS))
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown)}")
    return problems
