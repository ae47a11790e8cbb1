"""Retrieval calls are spans, callback events and trace rows that DuckDB SQL can answer
"which passages did the winning program see" from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.cli import main
from dspex.retrievers import BM25
from dspex.testing import DummyLM

CORPUS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "The Nile is the longest river in Africa.",
]


class RAG(dspex.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.retrieve = dspex.Retrieve(k=k)
        self.answer = dspex.Predict("context, question -> answer")

    def forward(self, question: str) -> dspex.Prediction:
        context = self.retrieve(question).passages
        return self.answer(context=context, question=question)


def test_retrieve_rows_answer_which_passages_each_trial_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rm = BM25(CORPUS)
    with dspex.traces.record(run_id="rag-run", runs_dir=tmp_path), dspex.context(rm=rm):
        for trial, k in ((1, 1), (2, 2)):
            lm = DummyLM([{"answer": "Paris"}])
            with dspex.context(labels={"trial": trial}, lm=lm):
                RAG(k)(question="What is the capital of France?")

    # The winning trial is the one a metric picked; here trial 2.
    rows = dspex.traces.sql(
        """
        SELECT trial, module_path, module_class,
               json_extract_string(inputs, '$.query') AS query,
               CAST(json_extract(inputs, '$.k') AS INTEGER) AS k,
               CAST(json_extract(outputs, '$.ids') AS VARCHAR[]) AS ids,
               CAST(json_extract(outputs, '$.scores') AS DOUBLE[]) AS scores,
               latency_ms
        FROM traces WHERE kind = 'retrieve' AND run_id = ? ORDER BY trial
        """,
        tmp_path,
        ["rag-run"],
    ).to_pylist()
    assert [(r["trial"], r["k"], r["ids"]) for r in rows] == [(1, 1, ["0"]), (2, 2, ["0", "1"])]
    assert {r["module_path"] for r in rows} == {"BM25"}
    assert all(r["query"] == "What is the capital of France?" for r in rows)
    assert rows[1]["scores"] == sorted(rows[1]["scores"], reverse=True)
    assert all(r["latency_ms"] >= 0 for r in rows)

    # A retrieve row hangs under the Retrieve module's row, which hangs under the program's.
    parents = dspex.traces.sql(
        "SELECT p.module_path FROM traces r JOIN traces p ON r.parent_span_id = p.span_id "
        "WHERE r.kind = 'retrieve' AND r.trial = 2",
        tmp_path,
    ).to_pylist()
    assert parents == [{"module_path": "retrieve"}]

    # The same question from the shell: `dspex traces sql`.
    query = (
        "SELECT CAST(json_extract(outputs, '$.ids') AS VARCHAR[]) AS ids FROM traces "
        "WHERE kind = 'retrieve' AND trial = 2"
    )
    assert main(["traces", "sql", "--runs-dir", str(tmp_path), "--format", "json", query]) == 0
    assert json.loads(capsys.readouterr().out) == [{"ids": ["0", "1"]}]


class _Events(dspex.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def on_retrieve_start(self, span: Any, retriever: Any, query: str, k: int) -> None:
        self.seen.append(("start", (span.kind, query, k)))

    def on_retrieve_end(
        self, span: Any, retriever: Any, passages: Any, error: BaseException | None
    ) -> None:
        self.seen.append(("end", None if passages is None else [p.id for p in passages]))
        if error is not None:
            self.seen.append(("error", type(error).__name__))


def test_callbacks_see_retrieval_and_its_failures() -> None:
    events = _Events()

    class Broken(dspex.retrievers.Retriever):
        def _search(self, query: str, k: int) -> list[dspex.retrievers.Passage]:
            raise RuntimeError("index offline")

    with dspex.context(callbacks=[events]):
        BM25(CORPUS, k=1)("longest river")
        with pytest.raises(RuntimeError, match="offline"):
            Broken().search("anything")
    assert events.seen == [
        ("start", ("retrieve", "longest river", 1)),
        ("end", ["2"]),
        ("start", ("retrieve", "anything", 5)),
        ("end", None),
        ("error", "RuntimeError"),
    ]
