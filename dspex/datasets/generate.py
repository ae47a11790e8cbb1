"""Write the bundled tasks to JSON Lines: ``python -m dspex.datasets.generate [--out DIR]``.

The rows are generated in code (see ``load_task``); the files under the repository's
``datasets/`` directory are a copy for people and tools outside Python, and a test checks that
they still equal what the generator makes. ``--check`` exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from dspex.datasets._task import load_task, task_names

__all__ = ["main", "render_corpus", "render_task"]


def render_task(name: str) -> str:
    """The JSON Lines text of a bundled task: one object per row, keys in a fixed order."""
    task = load_task(name)
    return _jsonl(ex.to_dict() for ex in task.examples)


def render_corpus(name: str) -> str | None:
    """The JSON Lines text of a retrieval task's corpus (``None`` for other tasks)."""
    task = load_task(name)
    return _jsonl(task.corpus) if task.corpus else None


def _jsonl(rows: Iterable[Mapping[str, object]]) -> str:
    return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)


def _files() -> Iterator[tuple[str, str]]:
    """``(file name, text)`` of every bundled file."""
    for name in task_names():
        yield f"{name}.jsonl", render_task(name)
        corpus = render_corpus(name)
        if corpus is not None:
            yield f"{name}_corpus.jsonl", corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dspex.datasets.generate", description=__doc__)
    parser.add_argument("--out", default="datasets", help="directory to write (default: datasets)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on change")
    args = parser.parse_args(argv)
    out = Path(args.out)
    stale = []
    for file_name, text in _files():
        target = out / file_name
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(target))
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    verb = "differ" if args.check else "written"
    print(f"{verb}: {', '.join(stale)}" if stale else "up to date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
