"""The one way the CLI prints a table: rich, with the columns it is given."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Sequence

__all__ = ["print_rich_table"]


def print_rich_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    right: Collection[str] = (),
    footer: str | None = None,
) -> None:
    """Print ``rows`` under ``columns`` as a rich table on stdout.

    Args:
        columns: the header, in order.
        rows: one sequence of cells per row, in column order; ``None`` shows as an empty
            cell, anything else as its ``str`` (rich markup included).
        title: the table's title.
        right: the columns to right-align (numbers).
        footer: a line printed under the table.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    # Not a terminal (a pipe, a test): do not squeeze the table into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 240)
    console.print(table)
    if footer is not None:
        console.print(footer)
