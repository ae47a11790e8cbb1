"""``Parallel`` (and ``Module.batch``, which shares its executor): pairs, errors, context."""

import logging

import pytest

import dspex
from dspex.testing import DummyLM


class Echo(dspex.Module):
    """Answers with its input; fails on inputs that start with "bad"."""

    def forward(self, text: str, suffix: str = "") -> dspex.Prediction:
        if text.startswith("bad"):
            raise ValueError(f"cannot echo {text}")
        return dspex.Prediction(text=text + suffix)


def test_pairs_of_every_kind_run_with_the_callers_settings() -> None:
    echo = Echo()
    qa = dspex.Predict("question -> answer")
    example = dspex.Example(text="ex", label="x").with_inputs("text")
    pairs = [
        (echo, example),
        (echo, {"text": "kw", "suffix": "!"}),
        (echo, ("pos", "?")),
        (dspex.Parallel(), [(echo, {"text": "nested"})]),
        (qa, {"question": "q"}),
    ]
    lm = DummyLM({"q": {"answer": "from the context's LM"}})
    with dspex.context(lm=lm):  # workers run in a copy of this context
        results = dspex.Parallel(num_threads=3)(pairs)
    assert [r.text for r in results[:3]] == ["ex", "kw!", "pos?"]
    assert results[3][0].text == "nested"
    assert results[4].answer == "from the context's LM"


def test_return_failed_examples_and_results_in_order(caplog: pytest.LogCaptureFixture) -> None:
    examples = [{"text": t} for t in ("a", "bad1", "b", "bad2", "c")]
    parallel = dspex.Parallel(num_threads=2, max_errors=5, return_failed_examples=True)
    results, failed, errors = parallel([(Echo(), ex) for ex in examples])
    assert [r and r.text for r in results] == ["a", None, "b", None, "c"]
    assert failed == [{"text": "bad1"}, {"text": "bad2"}]
    assert [str(e) for e in errors] == ["cannot echo bad1", "cannot echo bad2"]
    assert "Set provide_traceback=True for the traceback." in caplog.text
    assert "Traceback" not in caplog.text


def test_max_errors_stops_and_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    examples = [{"text": "bad"}] * 2 + [{"text": "fine"}] * 20
    with pytest.raises(RuntimeError, match=r"max_errors=2") as e:
        dspex.Parallel(num_threads=1, max_errors=2, provide_traceback=True)(
            [(Echo(), ex) for ex in examples]
        )
    assert isinstance(e.value.__cause__, ValueError)
    assert "Traceback" in caplog.text
    # The settings' max_errors applies when none is given.
    with dspex.context(max_errors=1), pytest.raises(RuntimeError, match=r"max_errors=1"):
        dspex.Parallel(num_threads=1)([(Echo(), ex) for ex in examples])


def test_batch_shares_the_executor() -> None:
    examples = [dspex.Example(text=t).with_inputs("text") for t in ("a", "bad", "b")]
    results, failed, errors = Echo().batch(examples, num_threads=2, return_failed_examples=True)
    assert [r and r.text for r in results] == ["a", None, "b"]
    assert failed == [examples[1]] and len(errors) == 1
    with pytest.raises(RuntimeError, match="max_errors=1"):
        Echo().batch(examples, max_errors=1)


def test_bad_pairs_fail_before_anything_runs() -> None:
    lm = DummyLM([])
    qa = dspex.Predict("question -> answer", lm=lm)
    with pytest.raises(dspex.DataError, match="item 1 has a str example"):
        dspex.Parallel()([(qa, {"question": "q"}), (qa, "q")])
    with pytest.raises(dspex.DataError, match="item 0 must be a"):
        dspex.Parallel()([qa])
    with pytest.raises(dspex.UserError, match="num_threads"):
        dspex.Parallel(num_threads=0)
    assert lm.requests == []
