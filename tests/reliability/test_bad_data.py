"""Bad data and bad settings fail loudly, before LM calls where possible (issue #12).

Public API only: ``import dspex`` and the scripted test LM from ``dspex.testing``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

import dspex
from dspex.evaluate import exact_match, requires_labels
from dspex.testing import DummyLM, Faults, ScriptedReply, SimulatedLM

# Parses as a ``str`` answer, but the model stopped mid-word at the token limit.
CUT = "[[ ## answer ## ]]\nThe capital of France is Pa"
SECRET = "dspex-test-secret-4d1f9a"


def _dev(n: int = 3, **extra: Any) -> list[dspex.Example]:
    return [
        dspex.Example(id=f"r{i}", question=f"{i}+1?", answer=str(i + 1), **extra).with_inputs(
            "question"
        )
        for i in range(n)
    ]


# ----- truncated answers -----------------------------------------------------------------


def test_truncated_answer_is_a_parse_error_not_cached_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cut = ScriptedReply(CUT, finish_reason="length")
    lm = DummyLM([cut, cut], cache=True, max_tokens=16)
    qa = dspex.Predict("question -> answer", lm=lm)
    with caplog.at_level(logging.WARNING, logger="dspex"), pytest.raises(dspex.ParseError) as info:
        qa(question="What is the capital of France?")
    err = info.value
    assert err.truncated and err.max_tokens == 16 and err.model == lm.model
    assert "max_tokens=16" in str(err) and "What to do" in str(err)
    assert lm.request_count == 1  # no re-ask: the same limit would cut it off again
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(lm.model in m and "max_tokens=16" in m for m in warned), warned
    # Never cached: asking again reaches the LM again.
    with pytest.raises(dspex.ParseError):
        qa(question="What is the capital of France?")
    assert lm.request_count == 2


def test_raw_callers_get_truncated_completions_uncached() -> None:
    cut = ScriptedReply("Once upon a", finish_reason="length")
    lm = DummyLM([cut, cut], cache=True, max_tokens=3)
    first = lm.forward([{"role": "user", "content": "Tell a story"}])
    assert first.outputs == ["Once upon a"] and first.truncated and first.cache_key is None
    assert not lm.forward([{"role": "user", "content": "Tell a story"}]).cache_hit
    assert lm.request_count == 2


def test_a_complete_choice_out_of_n_is_kept_and_a_cut_one_dropped() -> None:
    good = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
    lm = DummyLM([ScriptedReply(CUT, "length"), good])
    pred = dspex.Predict("question -> answer", lm=lm, n=2)(question="Capital of France?")
    assert pred.completions.answer == ["Paris"]


def test_simulated_truncation_fault_is_a_truncated_parse_error() -> None:
    lm = SimulatedLM(faults=Faults(rate_truncated=1.0), cache=False, max_tokens=64)
    with pytest.raises(dspex.ParseError) as info:
        dspex.Predict("question -> answer: int", lm=lm)(question="What is 2 + 3?")
    assert info.value.truncated and lm.request_count == 1


# ----- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize("metric", [exact_match, requires_labels("answer")(lambda e, p, t=None: 1)])
def test_missing_or_none_labels_are_a_data_error_before_any_lm_call(metric: Any) -> None:
    lm = DummyLM([])
    program = dspex.Predict("question -> answer", lm=lm)
    dev = [
        *_dev(2),
        dspex.Example(id="no-label", question="q").with_inputs("question"),
        dspex.Example(id="none-label", question="q", answer=None).with_inputs("question"),
    ]
    with pytest.raises(dspex.DataError) as info:
        dspex.Evaluate(devset=dev, metric=metric, progress=False)(program)
    assert info.value.row_ids == ["no-label", "none-label"]
    assert "no-label" in str(info.value) and "none-label" in str(info.value)
    assert lm.request_count == 0


def test_labels_are_checked_for_modules_of_unknown_outputs_too() -> None:
    class Custom(dspex.Module):
        def forward(self, question: str) -> dspex.Prediction:
            return dspex.Prediction(answer="1")

    dev = [*_dev(1), dspex.Example(id="blank", question="q", answer=None).with_inputs("question")]
    with pytest.raises(dspex.DataError) as info:
        dspex.Evaluate(devset=dev, metric=exact_match, progress=False)(Custom())
    assert info.value.row_ids == ["blank"]


# ----- metric values ---------------------------------------------------------------------


def _answers() -> DummyLM:
    return DummyLM({"+1?": {"answer": "1"}})


@pytest.mark.parametrize(
    ("bad", "says"),
    [(float("nan"), "not a finite number"), ("yes", "not a number"), (1.7, "outside [0, 1]")],
)
def test_a_metric_value_that_is_no_score_names_the_row(bad: Any, says: str) -> None:
    def metric(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> bool:
        return bad if example.id == "r1" else True  # type: ignore[no-any-return]

    program = dspex.Predict("question -> answer", lm=_answers())
    with pytest.raises(dspex.UserError, match=rf"row 'r1'.*{re.escape(says)}") as info:
        dspex.Evaluate(devset=_dev(3), metric=metric, concurrency=1, progress=False)(program)
    assert isinstance(info.value, ValueError | TypeError)
    assert isinstance(info.value, dspex.errors.MetricError) and info.value.row_id == "r1"


# ----- EvaluationError -------------------------------------------------------------------


def test_evaluation_error_names_rows_and_types_and_keeps_scores() -> None:
    class FailsOnTwo(dspex.Module):
        def forward(self, question: str) -> dspex.Prediction:
            if question.startswith(("1", "2")):
                raise ValueError(f"cannot answer {question!r} (private text)")
            return dspex.Prediction(answer="1")

    evaluate = dspex.Evaluate(
        devset=_dev(4), metric=exact_match, concurrency=1, max_errors=2, progress=False
    )
    with pytest.raises(dspex.EvaluationError) as info:
        evaluate(FailsOnTwo())
    err = info.value
    assert err.row_ids == ["r1", "r2"]
    assert err.error_types == {"r1": "ValueError", "r2": "ValueError"}
    assert err.scores == {"r0": 1.0}
    assert "r1: ValueError" in str(err) and "private text" not in str(err)
    assert "private text" in err.failures[0][2]  # the message is kept, off the summary


def test_evaluation_error_never_carries_a_secret() -> None:
    lm = DummyLM({"+1?": {"answer": "1"}}, api_key=SECRET)
    program = dspex.Predict("question -> answer", lm=lm)

    def leaky(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> bool:
        raise RuntimeError(f"auth to the grader failed with key {SECRET}")

    with pytest.raises(dspex.EvaluationError) as info:
        dspex.Evaluate(devset=_dev(2), metric=leaky, max_errors=0, progress=False)(program)
    err = info.value
    assert err.error_types[err.row_ids[0]] == "RuntimeError"
    shown = f"{err} {err!r} {err.args!r} {err.failures!r} {err.scores!r}"
    assert SECRET not in shown
    assert "[REDACTED]" in err.failures[0][2]
