"""dspex.cli._table: the one rich-table printer, and the CLI tables printed through it."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dspex.cli._demo import _print_candidates
from dspex.cli._optimize import _print_table
from dspex.cli._table import print_rich_table
from dspex.cli._traces import print_table


def _lines(out: str) -> list[str]:
    return [line.rstrip() for line in out.splitlines() if line.strip()]


def test_prints_title_header_cells_and_footer(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [("alpha", 1.5, None), ("b", 12, "x")]
    print_rich_table(["name", "score", "note"], rows, title="T", right=["score"], footer="2 rows")
    lines = _lines(capsys.readouterr().out)
    assert lines[0].strip() == "T" and lines[-1] == "2 rows"
    header = next(line for line in lines if "name" in line)
    assert "score" in header and "note" in header
    alpha = next(line for line in lines if "alpha" in line)
    b = next(line for line in lines if " b " in line)
    # "score" is right-aligned: both numbers end in the same column.
    assert alpha.index("1.5") + 3 == b.index("12") + 2
    assert "None" not in alpha  # None is an empty cell


def test_is_not_squeezed_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    print_rich_table(["wide"], [("w" * 150,)])
    assert "w" * 150 in capsys.readouterr().out


def test_cli_tables_use_it(capsys: pytest.CaptureFixture[str]) -> None:
    _print_table("Candidates", [{"id": "c0", "score": 80.0, "errors": None}], ["id", "score"])
    out = capsys.readouterr().out
    assert "Candidates" in out and "c0" in out and "80.0" in out

    candidates = [{"id": "c0", "demos": 2, "score": 75.25, "lm_calls": 9, "cache_hits": 1}]
    _print_candidates([*candidates, {"id": "c1"}], best="c0")
    out = capsys.readouterr().out
    assert "c0 *" in out and "75.2" in out and "[bold]" not in out  # markup is rendered

    table = pa.table({"run_id": ["r1", "r2", "r3"], "calls": [3, 4, 5]})
    print_table(table, title="runs", max_rows=2)
    out = capsys.readouterr().out
    assert "r2" in out and "r3" not in out and "3 row(s), showing 2 (--max-rows)" in out
