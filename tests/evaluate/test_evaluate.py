"""Evaluate: scores, per-row results, bad rows rejected before any LM call, errors reported."""

import threading
import time

import pytest

import dspex
from dspex.datasets import load_task
from dspex.testing import DummyLM, SimulatedLM


def exact(example, prediction, trace=None):  # type: ignore[no-untyped-def]
    return example.answer == prediction.answer


def _dev(n: int = 3) -> list[dspex.Example]:
    return [
        dspex.Example(id=f"r{i}", question=f"{i}+1?", answer=str(i + 1)).with_inputs("question")
        for i in range(n)
    ]


def test_scores_rows_table_and_usage() -> None:
    lm = DummyLM({"0+1?": {"answer": "1"}, "1+1?": {"answer": "2"}, "2+1?": {"answer": "oops"}})
    program = dspex.Predict("question -> answer", lm=lm)
    result = dspex.Evaluate(devset=_dev(), metric=exact, concurrency=2, progress=False)(program)
    assert result.score == pytest.approx(66.67)
    assert [r.score for r in result.rows] == [1.0, 1.0, 0.0]
    assert result.usage.calls == 3
    table = result.table
    assert table.column_names[:6] == ["row_id", "inputs", "labels", "outputs", "score", "error"]
    assert table.column("row_id").to_pylist() == ["r0", "r1", "r2"]
    assert "oops" in table.column("outputs").to_pylist()[2]
    assert "score: 66.67%" in result.summary()
    assert len(result.to_pandas()) == 3


def test_rows_without_declared_inputs_are_rejected_before_any_call() -> None:
    lm = DummyLM([])
    program = dspex.Predict("question -> answer", lm=lm)
    dev = [*_dev(2), dspex.Example(id="raw", question="x", answer="y")]
    with pytest.raises(dspex.DataError, match="no declared inputs") as info:
        dspex.Evaluate(devset=dev, metric=exact, progress=False)(program)
    assert info.value.row_ids == ["raw"]
    assert lm.request_count == 0


def test_rows_missing_a_program_input_are_rejected_with_ids() -> None:
    lm = DummyLM([])
    program = dspex.ChainOfThought("question, context -> answer", lm=lm)
    with pytest.raises(dspex.DataError, match=r"lack input\(s\) \['context'\]") as info:
        dspex.Evaluate(devset=_dev(2), metric=exact, progress=False)(program)
    assert info.value.row_ids == ["r0", "r1"]
    assert lm.request_count == 0


class Flaky(dspex.Module):
    """A sync-only module that fails on some inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.qa = dspex.Predict("question -> answer")

    def forward(self, question: str) -> dspex.Prediction:
        if question.startswith("1"):
            raise RuntimeError("tool crashed")
        return self.qa(question=question)


def test_errors_are_reported_not_scored() -> None:
    lm = DummyLM({"+1?": {"answer": "1"}})
    with dspex.context(lm=lm):
        result = dspex.Evaluate(devset=_dev(3), metric=exact, progress=False)(Flaky())
    assert [r.error is not None for r in result.rows] == [False, True, False]
    assert result.rows[1].score is None
    assert result.errors[0].error == "RuntimeError: tool crashed"
    assert result.n_errors == 1
    assert result.score_excluding_errors == 50.0


def test_max_errors_aborts_with_the_first_failures() -> None:
    class AlwaysFails(dspex.Module):
        def forward(self, question: str) -> dspex.Prediction:
            raise ValueError(f"bad {question}")

    # As in DSPy, the run stops once max_errors examples have failed.
    with pytest.raises(dspex.EvaluationError, match="max_errors=2") as info:
        dspex.Evaluate(devset=_dev(6), metric=exact, max_errors=2, progress=False)(AlwaysFails())
    err = info.value
    assert len(err.failures) >= 2
    assert set(err.error_types.values()) == {"ValueError"}
    assert f"{err.row_ids[0]}: ValueError" in str(err)
    assert "bad" not in str(err)  # row contents stay out of the message...
    assert err.failures[0][2].startswith("bad ")  # ...and on the error, redacted


def test_metric_errors_are_errors_and_async_metrics_work() -> None:
    lm = DummyLM({"+1?": {"answer": "1"}})
    program = dspex.Predict("question -> answer", lm=lm)

    def broken(example, prediction, trace=None):  # type: ignore[no-untyped-def]
        raise KeyError("label")

    result = dspex.Evaluate(devset=_dev(2), metric=broken, progress=False)(program)
    assert all(r.error and r.error.startswith("KeyError") for r in result.rows)
    assert result.rows[0].prediction is not None

    async def async_metric(example, prediction, trace=None):  # type: ignore[no-untyped-def]
        return 0.5

    result = dspex.Evaluate(devset=_dev(2), metric=async_metric, progress=False)(program)
    assert result.score == 50.0


def test_sync_modules_run_concurrently_in_worker_threads() -> None:
    active, peak = 0, 0
    lock = threading.Lock()

    class Slow(dspex.Module):
        def forward(self, question: str) -> dspex.Prediction:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.05)
            with lock:
                active -= 1
            return dspex.Prediction(answer="1")

    dspex.Evaluate(devset=_dev(24), metric=exact, concurrency=12, progress=False)(Slow())
    assert peak >= 10  # far above the stdlib executor's cpu_count + 4 on small machines


def test_simulated_lm_concurrent_evaluation_is_reproducible() -> None:
    task = load_task("arithmetic")
    dev = task.split(train=0, dev=40, seed=1).dev
    lm = SimulatedLM(task=task, cache=False)
    evaluate = dspex.Evaluate(devset=dev, metric=exact, concurrency=16, progress=False)
    first = evaluate(dspex.Predict("question -> answer: int", lm=lm))
    second = evaluate(dspex.Predict("question -> answer: int", lm=lm))
    assert first.score == second.score
    assert [r.score for r in first.rows] == [r.score for r in second.rows]
    assert lm.request_count == 80


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(dspex.UserError, match="concurrency"):
        dspex.Evaluate(devset=_dev(), metric=exact, concurrency=0)
    with pytest.raises(dspex.DataError, match="empty"):
        dspex.Evaluate(devset=[], metric=exact, progress=False)(dspex.Predict("question -> answer"))


def test_metrics_may_return_bools_numbers_and_scored_predictions() -> None:
    program = dspex.Predict("question -> answer", lm=DummyLM({"+1?": {"answer": "1"}}))
    values = iter([True, 2, dspex.Prediction(score=0.5, feedback="half")])

    def mixed(example, prediction, trace=None):  # type: ignore[no-untyped-def]
        return next(values)

    result = dspex.Evaluate(devset=_dev(3), metric=mixed, concurrency=1, progress=False)(program)
    assert [r.score for r in result.rows] == [1.0, 2.0, 0.5]  # unannotated: any finite number
