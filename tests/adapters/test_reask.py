"""The one re-ask rule: one JSON fallback with a fresh rollout; never a cached replay."""

import pytest

import dspex
from dspex.testing import DummyLM

GOOD_CHAT = "[[ ## answer ## ]]\n7\n\n[[ ## completed ## ]]"


def test_unparseable_answer_is_reasked_once_in_json_mode() -> None:
    lm = DummyLM(["[[ ## answer ## ]]\nseven", '{"answer": 7}'])
    pred = dspex.Predict("question -> answer: int", lm=lm)(question="3+4?")
    assert pred.answer == 7
    assert lm.request_count == 2
    first, second = lm.requests
    assert "response_format" not in first.kwargs
    assert second.kwargs["response_format"] == {"type": "json_object"}
    assert second.rollout_id != first.rollout_id
    assert pred.usage.calls == 2


def test_parse_error_names_field_reason_and_first_raw_text() -> None:
    lm = DummyLM(["[[ ## answer ## ]]\nseven", '{"answer": "eight"}'])
    with pytest.raises(dspex.ParseError) as info:
        dspex.Predict("question -> answer: int", lm=lm)(question="3+4?")
    err = info.value
    assert err.field == "answer"
    assert "valid integer" in err.reason
    assert err.raw == "[[ ## answer ## ]]\nseven"
    assert err.fallback_raw == '{"answer": "eight"}'
    assert "seven" in str(err) and "What to do" in str(err)
    assert lm.request_count == 2  # exactly one re-ask


def test_unparseable_answers_are_never_replayed_from_the_cache() -> None:
    lm = DummyLM(["garbage", '{"answer": 7}', GOOD_CHAT], cache=True)
    qa = dspex.Predict("question -> answer: int", lm=lm)
    assert qa(question="3+4?").answer == 7
    # The bad first answer was evicted: asking again makes a new request, not a replay.
    assert qa(question="3+4?").answer == 7
    assert lm.request_count == 3
    # ...and the good answer is now cached.
    assert qa(question="3+4?").answer == 7
    assert lm.request_count == 3


def test_one_good_completion_out_of_n_is_enough() -> None:
    lm = DummyLM(["nonsense", GOOD_CHAT])
    pred = dspex.Predict("question -> answer: int", lm=lm, n=2)(question="3+4?")
    assert pred.answer == 7
    assert len(pred.completions) == 1
    assert lm.request_count == 1


def test_n_completions_are_all_returned() -> None:
    lm = DummyLM([{"answer": "1"}, {"answer": "2"}, {"answer": "3"}])
    pred = dspex.Predict("question -> answer: int", lm=lm, n=3)(question="?")
    assert pred.completions.answer == [1, 2, 3]
    assert pred.answer == 1


def test_typed_outputs_through_predict_and_json_adapter() -> None:
    lm = DummyLM([{"label": "b", "tags": ["x", "y"], "point": {"x": 1, "y": 2}}])
    sig = dspex.make_signature(
        "text -> label: Literal['a', 'b'], tags: list[str], point: dict[str, int]"
    )
    pred = dspex.Predict(sig, lm=lm, adapter=dspex.JSONAdapter())(text="t")
    assert (pred.label, pred.tags, pred.point) == ("b", ["x", "y"], {"x": 1, "y": 2})


def test_a_reask_cut_off_at_the_token_limit_is_a_truncated_parse_error() -> None:
    from dspex.testing import ScriptedReply

    lm = DummyLM(["garbage", ScriptedReply('{"answer": 7', finish_reason="length")])
    with pytest.raises(dspex.ParseError) as info:
        dspex.Predict("question -> answer: int", lm=lm, max_tokens=5)(question="3+4?")
    err = info.value
    assert err.truncated and err.max_tokens == 5
    assert err.raw == "garbage" and err.fallback_raw == '{"answer": 7'
    assert lm.request_count == 2
