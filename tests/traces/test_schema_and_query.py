"""The row schema, the light import, and the DuckDB ``traces`` view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import dspex.traces
from dspex.errors import UserError
from dspex.traces import COLUMNS, TraceWriter, connect, sql, trace_schema
from dspex.traces._schema import check_row
from tests.traces._rows import make_row, make_rows


def test_schema_version_2_columns_and_types() -> None:
    schema = trace_schema()
    assert tuple(schema.names) == COLUMNS
    assert "run_id" not in COLUMNS  # it is the hive partition
    assert schema.field("labels").type == pa.map_(pa.string(), pa.string())
    assert schema.field("ended_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("trial").type == pa.int64() and schema.field("trial").nullable
    assert not schema.field("span_id").nullable and schema.field("cost").nullable
    # Added in version 2; nullable, so rows and files without them stay valid.
    assert all(schema.field(c).nullable for c in ("attempt", "status", "http_status"))
    assert check_row(make_row(0)) == []
    assert check_row({**make_row(0), "extra": 1}) == ["unknown column(s): extra"]


def test_public_surface_is_sorted_and_present() -> None:
    def group(name: str) -> tuple[int, str]:  # CONSTANTS, Classes, functions, as ruff sorts
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    names = dspex.traces.__all__
    assert names == sorted(names, key=group)
    for name in names:
        assert hasattr(dspex.traces, name), name
    assert {"TraceWriter", "connect", "sql", "report", "compact", "COLUMNS"} <= set(names)


def test_importing_traces_loads_neither_pyarrow_nor_duckdb() -> None:
    code = (
        "import json, sys, dspex.traces, dspex.cli._traces\n"
        "print(json.dumps([m for m in ('pyarrow', 'duckdb', 'rich') if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_the_view_exists_with_typed_columns_before_any_trace(tmp_path: Path) -> None:
    con = connect(tmp_path / "does-not-exist-yet")
    described = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE traces)").fetchall())
    assert list(described) == [*COLUMNS, "run_id"]
    assert described["labels"] == "MAP(VARCHAR, VARCHAR)"
    assert described["started_at"] == "TIMESTAMP WITH TIME ZONE"
    empty = sql("SELECT stage, sum(cost) AS cost FROM traces GROUP BY stage", tmp_path)
    assert empty.num_rows == 0 and empty.column_names == ["stage", "cost"]


def test_a_run_directory_holding_only_a_temp_file_is_still_empty(tmp_path: Path) -> None:
    run = tmp_path / "traces" / "run_id=r1"
    run.mkdir(parents=True)
    (run / ".part-x.parquet.tmp").write_bytes(b"PAR1 half")
    assert sql("SELECT count(*) AS n FROM traces", tmp_path).to_pylist() == [{"n": 0}]


def test_run_id_is_varchar_even_when_it_looks_like_a_number(tmp_path: Path) -> None:
    for run_id in ("20240601", "nightly-1"):
        with TraceWriter(tmp_path, run_id) as writer:
            writer.add(make_row(0))
    got = sql("SELECT run_id FROM traces ORDER BY run_id", tmp_path)
    assert got.schema.field("run_id").type == pa.string()
    assert got.column("run_id").to_pylist() == ["20240601", "nightly-1"]


def test_the_view_sees_parts_written_after_connect(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, "r1")
    writer.add(make_row(0))
    writer.flush()
    con = connect(tmp_path)
    assert con.sql("SELECT count(*) FROM traces").fetchall() == [(1,)]
    for row in make_rows(5, start=1):
        writer.add(row)
    writer.close()
    assert con.sql("SELECT count(*) FROM traces").fetchall() == [(6,)]
    # Threads query through their own cursors, which share the view.
    assert con.cursor().sql("SELECT count(*) FROM traces").fetchall() == [(6,)]


def test_sql_binds_parameters_and_returns_arrow(tmp_path: Path) -> None:
    with TraceWriter(tmp_path, "r1") as writer:
        for row in make_rows(8):
            writer.add(row)
    got = sql(
        "SELECT count(*) AS n FROM traces WHERE stage = $stage AND run_id = $run",
        tmp_path,
        {"stage": "eval", "run": "r1"},
    )
    assert isinstance(got, pa.Table) and got.to_pylist() == [{"n": 2}]
    hostile = sql("SELECT count(*) AS n FROM traces WHERE stage = ?", tmp_path, ["x' OR 1=1 --"])
    assert hostile.to_pylist() == [{"n": 0}]


@pytest.mark.parametrize(
    "query", ["SELEC 1", "SELECT nope FROM traces", "SELECT * FROM no_such_table"]
)
def test_query_mistakes_are_user_errors_that_name_the_columns(tmp_path: Path, query: str) -> None:
    with pytest.raises(UserError, match="Query the view `traces`; its columns are run_id"):
        sql(query, tmp_path)


def test_a_runs_dir_with_a_quote_in_its_path(tmp_path: Path) -> None:
    runs = tmp_path / "o'brien runs"
    with TraceWriter(runs, "r1") as writer:
        writer.add(make_row(0))
    assert sql("SELECT count(*) AS n FROM traces", runs).to_pylist() == [{"n": 1}]
