"""Optimizing a RAG program: ``dspex.datasets.RAG`` (Retrieve -> ChainOfThought) over a dense
index of the bundled ``rag`` corpus, embedded by ``dspex.Embedder`` through the loopback
server's ``/v1/embeddings``. BootstrapFewShot and MIPROv2 optimize it as Prefect flows (the
retriever stays out of the flows' JSON: every copy of the program shares it); the winner
registers with the MLflow flavor together with its index as an artifact, and a fresh process
loads it by alias, rebuilds the retriever with its own embedder endpoint, and answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.datasets import RAG, load_task
from dspex.testing import RunningServer, SimulatedLM, serve
from dspex.traces import sql
from tests.fresh import run_fresh

TASK = load_task("rag")
TRAIN, DEV, TEST = TASK.split(train=16, dev=30, test=50, seed=0)
TEXTS = [p["text"] for p in TASK.corpus]
IDS = [p["id"] for p in TASK.corpus]


def exact(example: dspex.Example, prediction: dspex.Prediction, trace: object = None) -> bool:
    return bool(example.answer == prediction.answer)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """The simulated model behind HTTP: chat completions and hashed embeddings."""
    with serve(SimulatedLM("rag")) as srv:
        yield srv


@pytest.fixture(scope="module")
def index(server: RunningServer) -> Any:
    embedder = dspex.Embedder("openai/hash", api_base=server.url, api_key="x", caching=False)
    return dspex.retrievers.Embeddings(corpus=TEXTS, embedder=embedder, k=3, ids=IDS)


def _score(program: dspex.Module, lm: dspex.LM, data: list[dspex.Example] = TEST) -> float:
    with dspex.context(lm=lm):
        return dspex.Evaluate(devset=data, metric=exact, concurrency=8, progress=False)(
            program
        ).score


def _recall(index: Any, data: list[dspex.Example]) -> float:
    hits = [ex.passage_id in index(ex.question).indices for ex in data]
    return sum(hits) / len(hits)


def test_the_dense_index_finds_the_answer_passage(index: Any) -> None:
    assert _recall(index, TEST) >= 0.8


@pytest.mark.slow
def test_bootstrap_fewshot_beats_the_unoptimized_rag(index: Any, tmp_path: Path) -> None:
    lm = SimulatedLM(task=TASK)
    baseline = _score(RAG(rm=index), lm)
    opt = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=4, max_labeled_demos=0)
    best = opt.compile(RAG(rm=index), trainset=TRAIN, lm=lm, runs_dir=tmp_path)

    assert isinstance(best, RAG) and best.retrieve.rm is index  # shared, never copied
    demos = best.generate.predict.demos
    assert len(demos) == 4 and all(len(d.context) == 3 for d in demos)
    assert _score(best, lm) >= baseline + 15


@pytest.mark.slow
def test_mipro_registers_rag_with_its_index_and_a_fresh_process_serves_it(
    index: Any, server: RunningServer, tmp_path: Path
) -> None:
    lm = SimulatedLM(task=TASK)
    baseline = _score(RAG(rm=index), lm)
    opt = dspex.MIPROv2(
        exact,
        auto=None,
        num_candidates=3,
        num_trials=4,
        max_bootstrapped_demos=3,
        max_labeled_demos=0,
        minibatch_size=10,
        seed=0,
    )
    best = opt.compile(
        RAG(rm=index),
        trainset=TRAIN,
        valset=DEV,
        lm=lm,
        runs_dir=tmp_path,
        tracking={"model_name": "rag", "alias": "champion"},
    )
    optimized = _score(best, lm)
    assert optimized >= baseline + 20
    result = opt.last_result
    assert result is not None and result.model_version == "1"

    # The index is an artifact of JSON and .npy files; nothing is pickled, no endpoint saved.
    artifacts = tmp_path / "mlartifacts"
    assert not [p for p in artifacts.rglob("*") if p.suffix in (".pkl", ".pickle")]
    indexes = [p for p in artifacts.rglob("retrievers/retrieve") if p.is_dir()]
    assert indexes and any(f.suffix == ".npy" for f in indexes[0].rglob("*"))
    saved = "".join(p.read_text() for p in artifacts.rglob("*.json"))
    assert server.url not in saved and "dspex.datasets._rag:RAG" in saved

    questions = TEST[:20]
    out = run_fresh(
        LOAD,
        server.url,
        [ex.question for ex in questions],
        cwd=tmp_path,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert out["program"] == "RAG" and out["retriever"] == "Embeddings"
    assert all(len(c) == 3 for c in out["contexts"])
    served = [a == ex.answer for a, ex in zip(out["answers"], questions, strict=True)]
    assert round(100 * sum(served) / len(served), 2) == _score(best, lm, questions)

    # Which passages did the winning program see? Its full evaluation's retrieve rows say,
    # and it answered right only where they held the answer passage.
    seen = _passages_seen(tmp_path, result.mlflow_run_id)
    assert set(seen) == {ex.question for ex in DEV}
    assert all(len(ids) == 3 for ids in seen.values())
    with dspex.context(lm=lm):
        right = [exact(ex, best(question=ex.question)) for ex in DEV]
    assert all(ex.passage_id in seen[ex.question] for ex, ok in zip(DEV, right) if ok)


def _passages_seen(runs: Path, run_id: str) -> dict[str, list[str]]:
    """Per question, the passage ids the program retrieved in the run's full evaluations."""
    rows = sql(
        "SELECT DISTINCT json_extract_string(inputs, '$.query') AS query, "
        "CAST(json_extract(outputs, '$.ids') AS VARCHAR) AS ids FROM traces "
        "WHERE kind = 'retrieve' AND stage = 'full-eval' AND run_id = ?",
        runs,
        [run_id],
    ).to_pylist()
    return {r["query"]: json.loads(r["ids"]) for r in rows}


LOAD = """
import json, sys
import dspex, dspex.mlflow
url = json.loads(sys.argv[1])
lm = dspex.LM("openai/sim", api_base=url, api_key="x", cache=False)
embedder = dspex.Embedder("openai/hash", api_base=url, api_key="x")
rag = dspex.mlflow.load_model("models:/rag@champion", lm=lm, embedder=embedder)
answers, contexts = [], []
for question in json.loads(sys.argv[2]):
    pred = rag(question=question)
    answers.append(pred.answer)
    contexts.append(rag.retrieve(question).passages)
print(json.dumps({
    "program": type(rag).__name__,
    "retriever": type(rag.retrieve.rm).__name__,
    "answers": answers,
    "contexts": contexts,
}))
"""
