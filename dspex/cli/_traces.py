"""``dspex traces``: SQL, named reports, run listing and compaction over the trace Parquet.

``add_parser(subparsers)`` registers the command; ``run(args)`` executes it and returns the
exit code (0 ok, 2 for a mistake in the query or arguments, 1 when the traces cannot be read;
messages are printed without a traceback). A trace part that cannot be read is left out of
the answer with a ``warning:`` line naming it; ``compact`` moves it to the run's quarantine.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dspex.cli._table import print_rich_table
from dspex.errors import DspexError, UserError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["add_parser", "run"]

_FORMATS = ("table", "csv", "json")
_MAX_CELL = 120  # characters of a cell shown in a table; csv and json keep everything


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``traces`` and its subcommands to the ``dspex`` subparsers."""
    from dspex.traces._reports import REPORTS

    traces = subparsers.add_parser(
        "traces",
        help="query the LM-call and module-call traces with SQL",
        description="Query trace Parquet under <runs-dir>/traces/ with DuckDB. The view is "
        "called `traces`; run_id comes from each run's directory.",
    )
    sub = traces.add_subparsers(dest="traces_command", required=True)

    sql = sub.add_parser("sql", help="run a SQL query over the `traces` view")
    sql.add_argument("query", help='e.g. "SELECT stage, sum(cost) FROM traces GROUP BY ALL"')
    _common(sql, output=True)

    report = sub.add_parser(
        "report",
        help="a named report: " + ", ".join(REPORTS),
        description="\n".join(f"{name}: {desc}" for name, desc in REPORTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("name", choices=list(REPORTS))
    report.add_argument("--run-id", default=None, help="only this run")
    report.add_argument("--stage", default=None, help="only rows with this stage label")
    _common(report, output=True)

    runs = sub.add_parser("runs", help="list runs with row counts, cost and time span")
    _common(runs, output=True)

    compact = sub.add_parser(
        "compact",
        help="merge a finished run's parts into one file; move unreadable parts to quarantine/",
    )
    compact.add_argument("run_id")
    _common(compact, output=False)
    return traces


def _common(parser: argparse.ArgumentParser, *, output: bool) -> None:
    parser.add_argument(
        "--runs-dir", default=None, help="runs directory (default: $DSPEX_RUNS_DIR or ./dspex-runs)"
    )
    if output:
        parser.add_argument("--format", choices=_FORMATS, default="table")
        parser.add_argument(
            "--max-rows", type=int, default=200, help="rows shown in table format (default 200)"
        )


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``dspex traces ...`` command; returns the exit code."""
    import duckdb

    from dspex.traces import CorruptPartWarning, TraceReadError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorruptPartWarning)
        try:
            code = _dispatch(args)
        except TraceReadError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 2
        except (DspexError, duckdb.Error) as e:
            print(f"error: the traces could not be read: {e}", file=sys.stderr)
            code = 1
    for w in caught:  # one plain line per skipped part, not Python's warning format
        if issubclass(w.category, CorruptPartWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    from dspex.traces import compact, report, runs, sql

    command = args.traces_command
    if command == "compact":
        result = compact(args.runs_dir, args.run_id)
        for moved in result.quarantined:
            print(f"run {result.run_id}: moved the unreadable part {moved.name} to {moved}")
        readable = result.parts_before - len(result.quarantined)
        if readable <= 1 or result.path is None:
            print(f"run {result.run_id}: {readable} readable part(s), nothing to merge")
        else:
            print(
                f"run {result.run_id}: merged {readable} parts into {result.path} "
                f"({result.rows} rows)"
            )
        return 0
    if command == "sql":
        table = sql(args.query, args.runs_dir)
        title = None
    elif command == "report":
        table = report(args.name, args.runs_dir, run_id=args.run_id, stage=args.stage)
        title = f"{args.name} report"
    elif command == "runs":
        table = runs(args.runs_dir)
        title = "runs"
    else:  # argparse's choices make this unreachable from the command line
        raise UserError(f"Unknown traces command {command!r}; see `dspex traces --help`.")
    print_table(table, args.format, title=title, max_rows=args.max_rows)
    return 0


def _records(table: pa.Table) -> list[dict[str, Any]]:
    import pyarrow as pa

    rows: list[dict[str, Any]] = table.to_pylist()
    maps = [f.name for f in table.schema if pa.types.is_map(f.type)]
    for row in rows:  # pyarrow gives a map as a list of pairs; show it as an object
        for name in maps:
            if row[name] is not None:
                row[name] = dict(row[name])
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def print_table(
    table: pa.Table, fmt: str = "table", *, title: str | None = None, max_rows: int = 200
) -> None:
    """Print an Arrow table as a rich table, CSV or a JSON array."""
    rows = _records(table)
    if fmt == "json":
        print(json.dumps(rows, ensure_ascii=False, default=str, indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([_text(row[c]) for c in table.column_names] for row in rows)
    else:
        _print_rich(table, rows, title=title, max_rows=max_rows)


def _print_rich(
    table: pa.Table, rows: list[dict[str, Any]], *, title: str | None, max_rows: int
) -> None:
    import pyarrow as pa

    numeric = [
        f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ]
    shown = min(len(rows), max_rows)
    more = f", showing {shown} (--max-rows)" if shown < len(rows) else ""
    print_rich_table(
        table.column_names,
        ([_cell(row[c]) for c in table.column_names] for row in rows[:max_rows]),
        title=title,
        right=numeric,
        footer=f"{len(rows)} row(s){more}",
    )


def _cell(value: Any) -> str:
    text = _text(value)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"
