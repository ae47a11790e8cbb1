"""File loaders: JSON Lines, CSV, Parquet and Hugging Face save_to_disk directories."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dspex.datasets import load_csv, load_hf_dir, load_jsonl, load_parquet
from dspex.errors import DataError, UserError

ROWS: list[dict[str, Any]] = [
    {"question": "1+1?", "answer": 2, "source": "a"},
    {"question": "2+2?", "answer": 4, "source": "b"},
    {"question": "3+3?", "answer": 6, "source": "c"},
]
BAD_ROWS: list[dict[str, Any]] = [
    {"question": "ok?", "answer": 1},
    {"answer": 2},
    {"question": None, "answer": 3},
    {"question": "fine", "answer": 4},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_hf_dataset(root: Path, rows: list[dict[str, Any]], split: str = "train") -> Path:
    """What ``Dataset.save_to_disk`` writes: an Arrow IPC *stream* file plus JSON metadata."""
    root.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    arrow = str(root / "data-00000-of-00001.arrow")
    with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    info = {
        "features": {name: {"dtype": "string", "_type": "Value"} for name in table.column_names}
    }
    (root / "dataset_info.json").write_text(json.dumps(info))
    state = {
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
        "_fingerprint": "0123456789abcdef",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": split,
    }
    (root / "state.json").write_text(json.dumps(state))
    return root


def check(examples: list[Any], answers: list[Any]) -> None:
    assert [ex.answer for ex in examples] == answers
    assert all(ex.input_keys == {"question"} for ex in examples)
    assert list(examples[0].inputs().keys()) == ["question"]
    assert set(examples[0].labels().keys()) == {"answer", "source"}  # unknown columns are kept


def test_jsonl(tmp_path: Path) -> None:
    check(load_jsonl(write_jsonl(tmp_path / "d.jsonl", ROWS), input_keys=["question"]), [2, 4, 6])


def test_csv_values_stay_strings(tmp_path: Path) -> None:
    check(load_csv(write_csv(tmp_path / "d.csv", ROWS), input_keys="question"), ["2", "4", "6"])


def test_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    check(load_parquet(tmp_path / "d.parquet", input_keys=["question"]), [2, 4, 6])


def test_hf_dataset_dir(tmp_path: Path) -> None:
    root = write_hf_dataset(tmp_path / "ds", ROWS)
    check(load_hf_dir(root, input_keys=["question"]), [2, 4, 6])
    check(load_hf_dir(root, input_keys=["question"], split="train"), [2, 4, 6])
    with pytest.raises(UserError, match="holds split 'train'"):
        load_hf_dir(root, input_keys=["question"], split="test")


def test_hf_dataset_dict_dir(tmp_path: Path) -> None:
    root = tmp_path / "dd"
    write_hf_dataset(root / "train", ROWS, "train")
    write_hf_dataset(root / "test", ROWS[:1], "test")
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    check(load_hf_dir(root, input_keys=["question"], split="test"), [2])
    with pytest.raises(UserError, match="pass split"):
        load_hf_dir(root, input_keys=["question"])
    with pytest.raises(UserError, match="no split 'dev'"):
        load_hf_dir(root, input_keys=["question"], split="dev")


def test_missing_files_are_user_errors(tmp_path: Path) -> None:
    for load in (load_jsonl, load_csv, load_parquet, load_hf_dir):
        with pytest.raises(UserError, match="no such"):
            load(tmp_path / "missing", input_keys=["question"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"state\.json"):
        load_hf_dir(tmp_path / "empty", input_keys=["question"])


def test_rows_missing_inputs_are_listed(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(BAD_ROWS), tmp_path / "bad.parquet")
    sources = [
        lambda: load_jsonl(write_jsonl(tmp_path / "bad.jsonl", BAD_ROWS), input_keys=["question"]),
        lambda: load_parquet(tmp_path / "bad.parquet", input_keys=["question"]),
        lambda: load_hf_dir(
            write_hf_dataset(tmp_path / "bad_hf", BAD_ROWS), input_keys=["question"]
        ),
    ]
    for load in sources:
        with pytest.raises(DataError, match=r"'question' is missing in row\(s\) 1, 2") as info:
            load()
        assert info.value.row_ids == [1, 2]


def test_csv_empty_cells_are_missing(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "bad.csv", [{"question": "q", "answer": 1}, {"question": "", "answer": 2}]
    )
    with pytest.raises(DataError) as info:
        load_csv(path, input_keys=["question"])
    assert info.value.row_ids == [1]


def test_bad_json_line_and_no_input_keys(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "a"}\n{broken\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2"):
        load_jsonl(path, input_keys=["question"])
    with pytest.raises(UserError, match="input_keys"):
        load_jsonl(write_jsonl(tmp_path / "ok.jsonl", ROWS), input_keys=[])
