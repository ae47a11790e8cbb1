"""``MultiChainComparison``'s prompt and ``majority``."""

import pytest

import dspex
from dspex.testing import DummyLM

ATTEMPTS = [
    {"reasoning": "2 + 2 is 4\nmore lines", "answer": "4"},
    {"rationale": "add two and two", "answer": " 5 \nand more"},
    {"reasoning": "two and two make four", "answer": "4"},
]


async def test_multi_chain_comparison_shows_each_attempt_as_dspy_does() -> None:
    lm = DummyLM([{"rationale": "most say 4", "answer": "4"}] * 2)
    compare = dspex.MultiChainComparison("question -> answer", M=3, lm=lm)
    assert compare.predict.config == {"temperature": 0.7}
    sig = compare.predict.signature
    assert list(sig.output_fields) == ["rationale", "answer"]
    assert list(sig.input_fields)[1:] == [f"reasoning_attempt_{i}" for i in (1, 2, 3)]
    pred = compare(completions=ATTEMPTS, question="2 + 2?")
    assert (pred.rationale, pred.answer) == ("most say 4", "4")
    user = lm.requests[0].messages[-1]["content"]
    assert (
        "[[ ## reasoning_attempt_1 ## ]]\n"
        "«I'm trying to 2 + 2 is 4 I'm not sure but my prediction is 4»" in user
    )
    assert "«I'm trying to add two and two I'm not sure but my prediction is 5»" in user
    assert (
        "2. `reasoning_attempt_1` (str): ${reasoning attempt}"
        in lm.requests[0].messages[0]["content"]
    )
    assert (await compare.acall(completions=ATTEMPTS, question="2 + 2?")).answer == "4"
    with pytest.raises(dspex.UserError, match=r"attempts \(2\) doesn't match .* M \(3\)"):
        compare(completions=ATTEMPTS[:2], question="2 + 2?")


def test_majority_normalizes_skips_empty_and_breaks_ties_by_order() -> None:
    votes = [{"answer": "The Paris!"}, {"answer": ""}, {"answer": "lyon"}, {"answer": "paris"}]
    assert dspex.majority(votes).answer == "The Paris!"  # first of the winning value
    assert dspex.majority([{"answer": "b"}, {"answer": "a"}]).answer == "b"  # a tie
    assert dspex.majority(votes, normalize=None).answer == "The Paris!"
    assert dspex.majority([{"a": "x", "b": "1"}, {"a": "y", "b": "1"}], field="a").a == "x"
    # A prediction with n completions: its signature's last output field is counted.
    lm = DummyLM([{"reasoning": "r", "answer": a} for a in ("3", "4", "4")])
    pred = dspex.ChainOfThought("question -> answer: int", n=3, lm=lm)(question="2 + 2?")
    assert [c.answer for c in pred.completions] == [3, 4, 4]
    chosen = dspex.majority(pred)
    assert chosen.answer == 4 and chosen.reasoning == "r"
    with pytest.raises(dspex.UserError, match="takes a Prediction"):
        dspex.majority("4")  # type: ignore[arg-type]
