"""Load examples from local files: JSON Lines, CSV, Parquet and Hugging Face ``save_to_disk``.

Every loader returns ``list[Example]`` with the declared input keys and checks the rows the
same way: a missing file is a ``UserError``; rows lacking a declared input (absent or null)
are a ``DataError`` that lists their row numbers (0-based). Extra columns are kept as labels.
pyarrow is imported only by the loaders that need it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex.errors import DataError, UserError
from dspex.primitives._example import Example

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["load_csv", "load_hf_dir", "load_jsonl", "load_parquet", "to_examples"]

PathLike = str | Path


def _existing(path: PathLike, what: str, *, directory: bool = False) -> Path:
    p = Path(path).expanduser()
    ok = p.is_dir() if directory else p.is_file()
    if not ok:
        kind = "directory" if directory else "file"
        raise UserError(f"{what}: no such {kind}: {str(p)!r}. Check the path (cwd: {Path.cwd()}).")
    return p


def _keys(input_keys: Iterable[str] | str, where: str) -> tuple[str, ...]:
    keys = (input_keys,) if isinstance(input_keys, str) else tuple(input_keys)
    if not keys:
        raise UserError(f"{where}: pass input_keys=('question', ...) naming the input columns.")
    return keys


def to_examples(
    rows: Sequence[Mapping[str, Any]], input_keys: Iterable[str] | str, *, source: str = "rows"
) -> list[Example]:
    """Check rows and turn them into examples with ``input_keys`` as inputs.

    Args:
        rows: one mapping per row.
        input_keys: the columns that are program inputs; the rest become labels.
        source: what to call the rows in error messages (usually the file path).

    Raises:
        DataError: when some rows lack a declared input key (absent or ``None``); the error's
            ``row_ids`` lists the 0-based row numbers.

    Example:
        >>> from dspex.datasets import to_examples
        >>> [ex.question for ex in to_examples([{"question": "1+1?", "answer": 2}], "question")]
        ['1+1?']
    """
    keys = _keys(input_keys, source)
    bad: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        for k in keys:
            if row.get(k) is None:
                bad.setdefault(k, []).append(i)
    if bad:
        raise _missing_inputs_error(bad, rows, source)
    return [Example(row).with_inputs(*keys) for row in rows]


def _missing_inputs_error(
    bad: Mapping[str, list[int]], rows: Sequence[Mapping[str, Any]], source: str
) -> DataError:
    columns = sorted({c for row in rows[:50] for c in row})
    parts = []
    for key, ids in bad.items():
        shown = ", ".join(map(str, ids[:20])) + (f" ... ({len(ids)} rows)" if len(ids) > 20 else "")
        parts.append(f"input key {key!r} is missing in row(s) {shown}")
    row_ids = sorted({i for ids in bad.values() for i in ids})
    return DataError(
        f"{source}: " + "; ".join(parts) + f". Columns seen: {columns}. Fix or drop those rows, "
        "or declare different input_keys.",
        row_ids=row_ids,
    )


def load_jsonl(path: PathLike, input_keys: Iterable[str] | str) -> list[Example]:
    """Load a JSON Lines file (one JSON object per line; blank lines skipped).

    Example:
        >>> from dspex.datasets import load_jsonl
        >>> rows = load_jsonl("datasets/factqa.jsonl", input_keys=["question"])  # doctest: +SKIP
    """
    p = _existing(path, "load_jsonl")
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}:{lineno}: not valid JSON ({e.msg}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{p}:{lineno}: expected a JSON object, got {type(row).__name__}.")
            rows.append(row)
    return to_examples(rows, input_keys, source=str(p))


def load_csv(
    path: PathLike, input_keys: Iterable[str] | str, *, delimiter: str = ","
) -> list[Example]:
    """Load a CSV file with a header row. Values stay strings; empty cells count as missing.

    Example:
        >>> from dspex.datasets import load_csv
        >>> examples = load_csv("qa.csv", input_keys=["question"])  # doctest: +SKIP
    """
    p = _existing(path, "load_csv")
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        rows = [
            {k: (v if v != "" else None) for k, v in r.items() if k is not None} for r in reader
        ]
    return to_examples(rows, input_keys, source=str(p))


def load_parquet(path: PathLike, input_keys: Iterable[str] | str) -> list[Example]:
    """Load a Parquet file (or a directory of Parquet files) with pyarrow.

    Example:
        >>> from dspex.datasets import load_parquet
        >>> examples = load_parquet("qa.parquet", input_keys=["question"])  # doctest: +SKIP
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"load_parquet: no such file or directory: {str(p)!r}.")
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    return to_examples(table.to_pylist(), input_keys, source=str(p))


def load_hf_dir(
    path: PathLike, input_keys: Iterable[str] | str, *, split: str | None = None
) -> list[Example]:
    """Load a Hugging Face ``datasets`` directory written by ``save_to_disk``, without
    depending on ``datasets``: the Arrow files are read with pyarrow.

    Accepts a ``Dataset`` directory (``state.json`` + ``data-*.arrow``) or a ``DatasetDict``
    directory (``dataset_dict.json`` + one sub-directory per split; pass ``split`` unless there
    is only one).

    Example:
        >>> from dspex.datasets import load_hf_dir
        >>> dev = load_hf_dir("hf/gsm8k", input_keys=["question"], split="test")  # doctest: +SKIP

    Raises:
        UserError: a missing directory, an unknown split, or a directory that is not a
            ``save_to_disk`` output.
        DataError: rows without a declared input key.
    """
    root = _existing(path, "load_hf_dir", directory=True)
    dict_file = root / "dataset_dict.json"
    if dict_file.is_file():
        splits = json.loads(dict_file.read_text(encoding="utf-8")).get("splits", [])
        if split is None:
            if len(splits) != 1:
                raise UserError(
                    f"load_hf_dir({str(root)!r}) holds splits {splits}; pass split=... to "
                    "choose one."
                )
            split = splits[0]
        if split not in splits:
            raise UserError(f"load_hf_dir({str(root)!r}): no split {split!r}; it has {splits}.")
        root = root / split
    table = _read_hf_dataset(root, split)
    return to_examples(table.to_pylist(), input_keys, source=str(root))


def _read_hf_dataset(root: Path, split: str | None) -> pa.Table:
    import pyarrow as pa

    state_file = root / "state.json"
    if not state_file.is_file():
        raise UserError(
            f"load_hf_dir: {str(root)!r} has no state.json; it is not a directory written by "
            "Dataset.save_to_disk (or DatasetDict.save_to_disk)."
        )
    state = json.loads(state_file.read_text(encoding="utf-8"))
    saved_split = state.get("_split")
    if split is not None and saved_split not in (None, split):
        raise UserError(
            f"load_hf_dir: {str(root)!r} holds split {saved_split!r}, not {split!r}; pass "
            f"split={saved_split!r} or split=None."
        )
    files = [root / entry["filename"] for entry in state.get("_data_files", [])]
    if not files:
        files = sorted(root.glob("data-*.arrow"))
    if not files:
        raise UserError(f"load_hf_dir: {str(root)!r} has no data-*.arrow files.")
    tables = [_read_arrow(_existing(f, "load_hf_dir")) for f in files]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _read_arrow(path: Path) -> pa.Table:
    import pyarrow as pa

    # save_to_disk writes the IPC *stream* format; older tools wrote the file format.
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()
