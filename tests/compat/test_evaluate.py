"""``dspex.Evaluate`` behaves as DSPy's (ported from the behaviours DSPy's
``tests/evaluate/test_evaluate.py`` and ``test_metrics.py`` check), with dspex's checks kept."""

import csv
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import dspex
from dspex.evaluate import EvaluationResult, answer_exact_match, normalize_text
from dspex.testing import DummyLM


def new_example(question: str, answer: str) -> dspex.Example:
    return dspex.Example(question=question, answer=answer).with_inputs("question")


def two_answers(first: str = "2", second: str = "4") -> DummyLM:
    return DummyLM({"What is 1+1?": {"answer": first}, "What is 2+2?": {"answer": second}})


DEVSET = [new_example("What is 1+1?", "2"), new_example("What is 2+2?", "4")]


def test_evaluate_initialization() -> None:
    ev = dspex.Evaluate(devset=DEVSET[:1], metric=answer_exact_match, display_progress=False)
    assert ev.devset == DEVSET[:1]
    assert ev.metric == answer_exact_match
    assert ev.num_threads is None
    assert not ev.display_progress


def test_evaluate_call() -> None:
    dspex.configure(lm=two_answers())
    program = dspex.Predict("question -> answer")
    assert program(question="What is 1+1?").answer == "2"
    ev = dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, display_progress=False)
    result = ev(program)
    assert result.score == 100.0
    assert isinstance(result, EvaluationResult)
    assert [score for *_, score in result.results] == [True, True]


def test_evaluate_single_thread_runs_in_main_thread() -> None:
    dspex.configure(lm=two_answers())
    threads = []

    def tracking_metric(example, prediction, **kwargs):  # type: ignore[no-untyped-def]
        # DSPy's Evaluate passes two arguments; a metric without `trace` works.
        threads.append(threading.current_thread())
        return answer_exact_match(example, prediction, **kwargs)

    ev = dspex.Evaluate(
        devset=DEVSET, metric=tracking_metric, display_progress=False, num_threads=1
    )
    assert ev(dspex.Predict("question -> answer")).score == 100.0
    assert len(threads) == 2
    assert all(t is threading.main_thread() for t in threads)


def test_multithread_evaluate_call() -> None:
    dspex.configure(lm=two_answers())
    ev = dspex.Evaluate(
        devset=DEVSET, metric=answer_exact_match, display_progress=False, num_threads=2
    )
    assert ev(dspex.Predict("question -> answer")).score == 100.0


def test_multi_thread_evaluate_call_cancelled() -> None:
    class Slow(dspex.Module):
        def forward(self, question: str) -> dspex.Prediction:
            time.sleep(1)
            return dspex.Prediction(answer="2")

    def interrupt() -> None:
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    ev = dspex.Evaluate(
        devset=DEVSET, metric=answer_exact_match, display_progress=False, num_threads=2
    )
    with pytest.raises(KeyboardInterrupt):
        ev(Slow())


def test_evaluate_call_wrong_answer() -> None:
    dspex.configure(lm=two_answers("0", "0"))
    ev = dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, display_progress=False)
    assert ev(dspex.Predict("question -> answer")).score == 0.0


@pytest.mark.parametrize("display_table", [True, False, 1])
def test_evaluate_display_table(
    display_table: bool | int, capsys: pytest.CaptureFixture[str]
) -> None:
    dspex.configure(lm=two_answers())
    ev = dspex.Evaluate(
        devset=DEVSET,
        metric=lambda example, pred, **kwargs: example.answer == pred.answer,
        display_table=display_table,
        display_progress=False,
    )
    assert ev.display_table == display_table
    ev(dspex.Predict("question -> answer"))
    out = capsys.readouterr().out
    assert ("What is 1+1?" in out) == bool(display_table)
    # A number shows that many rows, and says how many it left out.
    assert ("What is 2+2?" in out) == (display_table is True)
    assert ("1 more rows not displayed" in out) == (
        display_table == 1 and display_table is not True
    )


def test_a_program_may_be_a_plain_function_returning_no_prediction() -> None:
    dspex.configure(lm=DummyLM({"United States": {"entities": ["United States"]}}))
    predict = dspex.Predict("text: str -> entities: list[str]")

    def program(text: str) -> list[str]:
        return list(predict(text=text).entities)

    example = dspex.Example(text="United States", entities=["United States"]).with_inputs("text")
    ev = dspex.Evaluate(
        devset=[example],
        metric=lambda ex, pred, **kwargs: ex.entities == pred,
        display_progress=False,
    )
    result = ev(program)
    assert result.score == 100.0
    assert result.results[0][1] == ["United States"]


def test_evaluate_calls_dspex_callbacks_once() -> None:
    class Recorder(dspex.Callback):
        def __init__(self) -> None:
            self.starts: list[object] = []
            self.ends: list[object] = []

        def on_evaluate_start(self, span, evaluate, program, n):  # type: ignore[no-untyped-def]
            self.starts.append(program)

        def on_evaluate_end(self, span, evaluate, result, error):  # type: ignore[no-untyped-def]
            self.ends.append(result)

    for threads in (1, 2):
        recorder = Recorder()
        dspex.configure(lm=two_answers(), callbacks=[recorder])
        program = dspex.Predict("question -> answer")
        ev = dspex.Evaluate(
            devset=DEVSET, metric=answer_exact_match, display_progress=False, num_threads=threads
        )
        assert ev(program).score == 100.0
        assert recorder.starts == [program]
        assert [r.score for r in recorder.ends] == [100.0]  # type: ignore[attr-defined]


def test_evaluation_result_repr() -> None:
    result = EvaluationResult(
        score=100.0, results=[(new_example("What is 1+1?", "2"), {"answer": "2"}, 100.0)]
    )
    assert repr(result) == "EvaluationResult(score=100.0, results=<list of 1 results>)"
    assert result["score"] == result.score == 100.0
    assert result.results[0][1] == {"answer": "2"}


def test_evaluation_result_compares_as_its_score() -> None:
    dspex.configure(lm=two_answers("2", "0"))
    result = dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, display_progress=False)(
        dspex.Predict("question -> answer")
    )
    assert result.score == 50.0
    assert float(result) == 50.0
    assert result > 40 and result <= 50 and not result < 50
    assert result + 1 == 51.0
    assert result / 2 == 25.0


def _history_devset() -> list[dspex.Example]:
    history1 = dspex.History(messages=[{"question": "Previous Q1", "answer": "Previous A1"}])
    history2 = dspex.History(
        messages=[
            {"question": "Previous Q2", "answer": "Previous A2"},
            {"question": "Previous Q3", "answer": "Previous A3"},
        ]
    )
    return [
        dspex.Example(question="What is 1+1?", answer="2", history=history1).with_inputs(
            "question"
        ),
        dspex.Example(question="What is 2+2?", answer="4", history=history2).with_inputs(
            "question"
        ),
    ]


def test_evaluate_save_as_json_with_history(tmp_path: Path) -> None:
    dspex.configure(lm=two_answers())
    path = tmp_path / "results.json"
    evaluator = dspex.Evaluate(
        devset=_history_devset(),
        metric=answer_exact_match,
        display_progress=False,
        save_as_json=str(path),
    )
    assert evaluator(dspex.Predict("question -> answer")).score == 100.0
    data = json.loads(path.read_text())
    assert len(data) == 2
    assert data[0]["history"] == {
        "messages": [{"question": "Previous Q1", "answer": "Previous A1"}]
    }
    assert len(data[1]["history"]["messages"]) == 2
    assert data[1]["history"]["messages"][1] == {"question": "Previous Q3", "answer": "Previous A3"}
    # A field both sides have is written twice, as DSPy does; the score under the metric's name.
    assert data[0]["example_answer"] == data[0]["pred_answer"] == "2"
    assert data[0]["answer_exact_match"] is True


def test_evaluate_save_as_csv_with_history(tmp_path: Path) -> None:
    dspex.configure(lm=two_answers())
    path = tmp_path / "results.csv"
    evaluator = dspex.Evaluate(
        devset=_history_devset()[:1],
        metric=answer_exact_match,
        display_progress=False,
    )
    # The file names may also be given to the call, as DSPy allows.
    assert evaluator(dspex.Predict("question -> answer"), save_as_csv=str(path)).score == 100.0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert "messages" in rows[0]["history"]
    assert rows[0]["question"] == "What is 1+1?"


def test_metric_and_devset_may_be_given_to_the_call() -> None:
    dspex.configure(lm=two_answers("2", "0"))
    ev = dspex.Evaluate(devset=DEVSET, display_progress=False)
    program = dspex.Predict("question -> answer")
    assert ev(program, metric=answer_exact_match).score == 50.0
    assert ev(program, answer_exact_match, DEVSET[:1]).score == 100.0
    with pytest.raises(ValueError, match="metric"):
        ev(program)


class FailsOnTwo(dspex.Module):
    def forward(self, question: str) -> dspex.Prediction:
        if "2+2" in question or "3+3" in question:
            raise RuntimeError("tool crashed")
        return dspex.Prediction(answer="2")


DEV4 = [*DEVSET, new_example("What is 3+3?", "6"), new_example("What is 1+1 again?", "2")]


def test_failed_examples_score_failure_score() -> None:
    result = dspex.Evaluate(
        devset=DEV4, metric=answer_exact_match, failure_score=0.5, display_progress=False
    )(FailsOnTwo())
    assert result.score == 75.0  # (1 + 0.5 + 0.5 + 1) / 4
    failed = result.results[1]
    assert failed[0] is DEV4[1]
    assert isinstance(failed[1], dspex.Prediction) and not failed[1].keys()
    assert failed[2] == 0.5
    assert result.n_errors == 2
    assert result.score_excluding_errors == 100.0


def test_max_errors_stops_when_that_many_examples_have_failed() -> None:
    # DSPy stops once max_errors examples have failed; dspex says which rows.
    ev = dspex.Evaluate(
        devset=DEV4, metric=answer_exact_match, max_errors=2, num_threads=1, display_progress=False
    )
    with pytest.raises(dspex.EvaluationError, match="max_errors=2") as info:
        ev(FailsOnTwo())
    assert info.value.row_ids == [1, 2]
    assert isinstance(info.value, Exception)
    # Below the limit the run finishes, the failures reported.
    ev = dspex.Evaluate(
        devset=DEV4, metric=answer_exact_match, max_errors=3, num_threads=1, display_progress=False
    )
    assert ev(FailsOnTwo()).n_errors == 2


def test_max_errors_and_num_threads_come_from_the_settings() -> None:
    ev = dspex.Evaluate(devset=DEV4, metric=answer_exact_match, display_progress=False)
    assert ev(FailsOnTwo()).n_errors == 2  # dspex's default: never stop
    with (
        dspex.context(max_errors=1, num_threads=1),
        pytest.raises(dspex.EvaluationError, match="max_errors=1") as info,
    ):
        ev(FailsOnTwo())
    assert info.value.row_ids == [1]


def test_failures_are_logged_with_a_traceback_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ev = dspex.Evaluate(devset=DEV4, metric=answer_exact_match, display_progress=False)
    ev(FailsOnTwo())
    assert "provide_traceback=True" in caplog.text and "Traceback" not in caplog.text
    caplog.clear()
    ev = dspex.Evaluate(
        devset=DEV4, metric=answer_exact_match, provide_traceback=True, display_progress=False
    )
    ev(FailsOnTwo())
    assert "Traceback" in caplog.text and "tool crashed" in caplog.text


def test_return_outputs_is_refused_and_typos_are_named() -> None:
    with pytest.raises(ValueError, match="return_outputs"):
        dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, return_outputs=True)
    with pytest.raises(TypeError, match="did you mean 'num_threads'"):
        dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, num_thread=2)
    # DSPy 2's return_all_scores is accepted: every score is in result.results.
    dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, return_all_scores=True)
    with pytest.raises(ValueError, match="two names"):
        dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, num_threads=2, concurrency=4)


def test_dspex_checks_stay() -> None:
    program = dspex.Predict("question -> answer", lm=two_answers())
    with pytest.raises(ValueError, match="devset"):
        dspex.Evaluate(devset=[], metric=answer_exact_match)(program)
    # A metric that returns no number stops the run, naming the row (DSPy would sum it).
    with pytest.raises(dspex.errors.MetricError, match="row 0"):
        dspex.Evaluate(devset=DEVSET, metric=lambda e, p: math.nan, display_progress=False)(program)
    # answer_exact_match reads `answer`: rows without it are refused before any LM call.
    unlabeled = [dspex.Example(question="What is 1+1?").with_inputs("question")]
    lm = two_answers()
    with pytest.raises(dspex.DataError, match="answer"):
        dspex.Evaluate(devset=unlabeled, metric=answer_exact_match)(
            dspex.Predict("question -> answer", lm=lm)
        )
    assert lm.request_count == 0


def test_dspex_names_still_work() -> None:
    program = dspex.Predict("question -> answer", lm=two_answers())
    ev = dspex.Evaluate(devset=DEVSET, metric=answer_exact_match, concurrency=2, progress=False)
    assert ev.concurrency == 2 and ev.display_progress is False
    result = ev(program)
    assert [r.row_id for r in result.rows] == [0, 1]
    assert result.usage.calls == 2


def test_answer_exact_match_and_normalize_text() -> None:
    # DSPy's tests/evaluate/test_metrics.py
    example = dspex.Example(question="What is 1+1?", answer="2").with_inputs("question")
    assert answer_exact_match(example, dspex.Prediction(answer="2"))
    assert not answer_exact_match(example, dspex.Prediction(answer="3"))
    many = dspex.Example(answer=["Eiffel Tower", "Louvre"])
    assert answer_exact_match(many, dspex.Prediction(answer="The Eiffel Tower"))
    assert answer_exact_match(
        dspex.Example(answer="Eiffel Tower in Paris"),
        dspex.Prediction(answer="Eiffel Tower"),
        frac=0.5,
    )
    assert normalize_text("The,  Eiffel  Tower!") == "eiffel tower"
