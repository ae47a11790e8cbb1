"""Finding unreadable parts stays off the fast path and reads each good part once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dspex.traces import TraceWriter, _parts, report, sql
from tests.traces._rows import make_rows


def _write(runs: Path, n: int = 3) -> list[Path]:
    for i in range(n):
        with TraceWriter(runs, "r1") as writer:
            writer.add(make_rows(1, start=i)[0])
    return _parts.list_parts(runs)


def test_healthy_queries_never_check_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("parts were checked on the fast path")

    monkeypatch.setattr(_parts, "_problem", forbidden)
    assert sql("SELECT count(*) AS n FROM traces", tmp_path).to_pylist() == [{"n": 3}]
    assert report("cost", tmp_path).num_rows > 0


def test_good_parts_are_remembered_until_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = _write(tmp_path)
    assert _parts.find_bad_parts(parts, full=True) == {}
    checked: list[Path] = []
    real = _parts._problem

    def counting(path: Path, level: int) -> str | None:
        checked.append(path)
        return real(path, level)

    monkeypatch.setattr(_parts, "_problem", counting)
    assert _parts.find_bad_parts(parts, full=False) == {}  # a full check covers the footer
    assert _parts.find_bad_parts(parts, full=True) == {}
    assert checked == []
    changed = parts[0]
    changed.write_bytes(changed.read_bytes()[:50])
    os.utime(changed, ns=(0, 0))
    bad = _parts.find_bad_parts(parts, full=False)
    assert list(bad) == [changed] and checked == [changed]
