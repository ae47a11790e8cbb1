"""``BestOfN`` and ``Refine``: bounded fresh rollouts, feedback between attempts, traces."""

import json
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.testing import DummyLM


def one_word(args: dict[str, Any], pred: dspex.Prediction) -> float:
    return 1.0 if len(pred.answer.split()) == 1 else 0.0


def answer_length(args: dict[str, Any], pred: dspex.Prediction) -> float:
    return float(len(pred.answer))


QUESTION = "What is the capital of Belgium?"


def test_refine_stops_at_the_threshold_and_passes_feedback_as_a_hint() -> None:
    lm = DummyLM(
        [
            {"answer": "Brussels, in Belgium"},
            {"discussion": "The answer was too long.", "advice": '{"self": "Use one word."}'},
            {"answer": "Brussels"},
        ]
    )
    qa = dspex.Predict("question -> answer", lm=lm)
    refine = dspex.Refine(qa, N=5, reward_fn=one_word, threshold=1.0)

    assert refine(question=QUESTION).answer == "Brussels"

    # Two attempts and one feedback call, not five attempts: the second reached the threshold.
    attempt1, feedback, attempt2 = lm.requests
    assert (attempt1.rollout_id, attempt2.rollout_id) == (0, 1)
    assert attempt1.kwargs["temperature"] == attempt2.kwargs["temperature"] == 1.0
    assert feedback.rollout_id is None
    system, user = (m["content"] for m in feedback.messages)
    assert system.startswith("Your input fields are:\n1. `program_code` (str): The code of")
    assert "In the discussion, assign blame to each module" in system
    assert "def one_word(args" in user  # the reward's source
    assert "class Predict(" in user  # the program's source
    assert '[[ ## module_names ## ]]\n[\n  "self"\n]' in user
    assert "[[ ## reward_value ## ]]\n0.0" in user
    assert '"answer": "Brussels, in Belgium"' in user  # the failed attempt's trajectory
    # The advice reached the next attempt as DSPy's ``hint_`` input.
    assert (
        "2. `hint_` (str): A hint to the module from an earlier run"
        in (attempt2.messages[0]["content"])
    )
    assert "[[ ## hint_ ## ]]\nUse one word." in attempt2.messages[-1]["content"]
    assert "hint_" not in attempt1.messages[0]["content"]


async def test_refine_async_and_its_predictors_stay_the_modules() -> None:
    lm = DummyLM(
        [
            {"reasoning": "r", "answer": "Brussels, Belgium"},
            {"discussion": "d", "advice": '{"predict": "One word only."}'},
            {"reasoning": "r", "answer": "Brussels"},
        ]
    )
    cot = dspex.ChainOfThought("question -> answer")
    refine = dspex.Refine(cot, N=2, reward_fn=one_word, threshold=1.0)
    # The reward function is not part of the program; the module's predictors are.
    assert [name for name, _ in refine.named_predictors()] == ["module.predict"]
    with dspex.context(lm=lm):
        pred = await refine.acall(question=QUESTION)
    assert pred.answer == "Brussels"
    assert "[[ ## hint_ ## ]]\nOne word only." in lm.requests[-1].messages[-1]["content"]


def test_best_of_n_returns_the_best_with_every_attempt_in_the_traces(tmp_path: Path) -> None:
    answers = [{"answer": a} for a in ("Brussels", "Brussels, Belgium", "Bruxelles")]
    lm = DummyLM(answers, cache=True)
    qa = dspex.Predict("question -> answer", lm=lm)
    best = dspex.BestOfN(qa, N=3, reward_fn=answer_length, threshold=100.0)

    with dspex.traces.record(run_id="bon", runs_dir=tmp_path):
        assert best(question=QUESTION).answer == "Brussels, Belgium"
        # The same call again: the three rollouts are three cache entries, replayed.
        assert best(question=QUESTION).answer == "Brussels, Belgium"
    rows = dspex.traces.sql(
        "SELECT kind, module_class, rollout_id, cache_hit, span_id, parent_span_id "
        "FROM traces ORDER BY started_at",
        tmp_path,
    ).to_pylist()
    lm_rows = [r for r in rows if r["kind"] == "lm"]
    assert [r["rollout_id"] for r in lm_rows] == ["0", "1", "2"] * 2
    assert [r["cache_hit"] for r in lm_rows] == [False] * 3 + [True] * 3
    assert len(lm.requests) == 3  # distinct rollout ids: three fresh samples, then the cache
    # One module row per attempt, each under the BestOfN call and parent of its LM row.
    outer = [r for r in rows if r["module_class"] == "BestOfN"]
    attempts = [r for r in rows if r["module_class"] == "Predict" and r["kind"] == "module"]
    assert len(outer) == 2 and len(attempts) == 6
    assert {a["parent_span_id"] for a in attempts} == {o["span_id"] for o in outer}
    assert {r["parent_span_id"] for r in lm_rows} == {a["span_id"] for a in attempts}


def test_rollouts_start_from_the_lms_rollout_id_and_keep_a_predictors_temperature() -> None:
    lm = DummyLM([{"answer": "a b"}, {"answer": "c d"}], rollout_id=7)
    qa = dspex.Predict("question -> answer", lm=lm, temperature=0.3)
    best = dspex.BestOfN(qa, N=2, reward_fn=one_word, threshold=1.0)
    assert best(question=QUESTION).answer == "a b"  # the first of equal rewards
    assert [r.rollout_id for r in lm.requests] == [7, 8]
    assert {r.kwargs["temperature"] for r in lm.requests} == {0.3}
    assert qa.config == {"temperature": 0.3}  # attempts run on copies


class Flaky(dspex.Module):
    """Fails its first ``failures`` calls, then answers."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def forward(self, question: str) -> dspex.Prediction:
        # Attempts run on deep copies; count on the class-level list shared by all copies.
        CALLS.append(question)
        if len(CALLS) <= self.failures:
            raise RuntimeError(f"flaky call {len(CALLS)}")
        return dspex.Prediction(answer="ok")


CALLS: list[str] = []


@pytest.mark.parametrize(
    ("failures", "fail_count", "outcome"),
    [(2, None, "ok"), (1, 1, "ok"), (2, 1, "flaky call 2"), (3, None, "flaky call 3")],
)
def test_errors_count_against_fail_count(
    failures: int, fail_count: int | None, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    CALLS.clear()
    best = dspex.BestOfN(Flaky(failures), N=3, reward_fn=lambda a, p: 1.0, threshold=1.0,
                         fail_count=fail_count)  # fmt: skip
    if outcome == "ok":
        assert best(question="q").answer == "ok"
        assert len(CALLS) == failures + 1
    else:
        with pytest.raises(RuntimeError, match=outcome):
            best(question="q")
    assert "BestOfN: attempt 1 failed with rollout id 0: flaky call 1" in caplog.text


def test_bad_arguments_fail_before_any_call() -> None:
    qa = dspex.Predict("question -> answer")
    with pytest.raises(dspex.UserError, match=r"N=\.\.\.") as e:
        dspex.Refine(qa, N=0, reward_fn=one_word, threshold=1.0)
    assert "int >= 1" in str(e.value)
    with pytest.raises(dspex.UserError, match="reward_fn"):
        dspex.BestOfN(qa, N=2, reward_fn="one_word", threshold=1.0)  # type: ignore[arg-type]
    with pytest.raises(dspex.UserError, match=r"needs a dspex\.Module"):
        dspex.BestOfN(one_word, N=2, reward_fn=one_word, threshold=1.0)  # type: ignore[arg-type]


def test_refine_feedback_inputs_are_json_for_structured_values() -> None:
    lm = DummyLM(
        [
            {"answer": "x y"},
            {"discussion": "d", "advice": json.dumps({"self": "N/A"})},
            {"answer": "x y"},
        ]
    )
    refine = dspex.Refine(
        dspex.Predict("question -> answer", lm=lm), N=2, reward_fn=one_word, threshold=1.0
    )
    assert refine(question="é?").answer == "x y"  # below the threshold: the best of the two
    user = lm.requests[1].messages[-1]["content"]
    assert '[[ ## program_inputs ## ]]\n{\n  "question": "é?"\n}' in user
    assert "[[ ## target_threshold ## ]]\n1.0" in user
