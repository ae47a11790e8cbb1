"""DSPy's evaluation outputs: the results table (``display_table``) and the CSV/JSON files
(``save_as_csv``, ``save_as_json``), one record per example as DSPy writes them."""

from __future__ import annotations

import csv
import json
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dspex._jsonable import json_default_or_str
from dspex.primitives import Example

__all__ = ["metric_name", "print_table", "records", "save_csv", "save_json"]

_CELL_WORDS = 25  # DSPy truncates each table cell to 25 words


def metric_name(metric: Callable[..., Any]) -> str:
    """The metric's column name: a function's ``__name__``, else its class name (as DSPy)."""
    if isinstance(metric, types.FunctionType):
        return metric.__name__
    return type(metric).__name__


def _as_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, Example):
        return value.toDict()
    items = getattr(value, "items", None)
    if callable(items):
        return dict(items())
    return None


def _record(example: Example, prediction: Any, score: Any, name: str) -> dict[str, Any]:
    """One example's record: its fields and the prediction's (a name both have becomes
    ``example_<name>`` and ``pred_<name>``), then the score under the metric's name."""
    ex = example.toDict()
    pred = _as_dict(prediction)
    if pred is None:
        return {**ex, "prediction": prediction, name: score}
    merged = {(f"example_{k}" if k in pred else k): v for k, v in ex.items()}
    merged.update({(f"pred_{k}" if k in ex else k): v for k, v in pred.items()})
    merged[name] = score
    return merged


def records(results: Sequence[tuple[Example, Any, Any]], name: str) -> list[dict[str, Any]]:
    """DSPy's records for ``(example, prediction, score)`` triples."""
    return [_record(ex, pred, score, name) for ex, pred, score in results]


def _cell(value: Any) -> str:
    words = str(value).split()
    return " ".join(words[:_CELL_WORDS]) + "..." if len(words) > _CELL_WORDS else str(value)


def print_table(rows: Sequence[Mapping[str, Any]], name: str, limit: bool | int) -> None:
    """Print the records as a table on stdout (``limit``: ``True`` for all rows, or a count)."""
    from rich.console import Console
    from rich.table import Table

    shown = list(rows) if limit is True else list(rows)[: int(limit)]
    columns = list(dict.fromkeys(k for row in shown for k in row))
    table = Table(*columns, show_lines=False)
    for row in shown:
        table.add_row(
            *(_score_cell(row.get(c)) if c == name else _cell(row.get(c, "")) for c in columns)
        )
    console = Console(soft_wrap=True)
    console.print(table, overflow="fold")
    hidden = len(rows) - len(shown)
    if hidden > 0:
        console.print(f"... {hidden} more rows not displayed ...")


def _score_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"✔️ [{value:.3f}]"
    return "" if value is None else f"✔️ [{value}]"


def save_json(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the records as one JSON list (values without a JSON form as text)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump([dict(r) for r in rows], f, default=json_default_or_str, ensure_ascii=False)


def save_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the records as CSV, one column per field any record has."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
