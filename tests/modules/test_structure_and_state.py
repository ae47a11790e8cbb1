"""Module trees: predictors, copies, and JSON state that round-trips."""

import json

import pytest

import dspex


class Pipeline(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspex.ChainOfThought("question -> answer")
        self.checks = [dspex.Predict("answer -> ok: bool"), dspex.Predict("answer -> why")]
        self.shared = self.draft  # the same module twice is one predictor, not two

    def forward(self, question: str) -> dspex.Prediction:
        return self.draft(question=question)


def test_named_predictors_walks_attributes_lists_and_dedups() -> None:
    names = [n for n, _ in Pipeline().named_predictors()]
    assert names == ["draft.predict", "checks[0]", "checks[1]"]
    assert [n for n, _ in dspex.Predict("q -> a").named_predictors()] == ["self"]


def test_deepcopy_and_reset_copy_do_not_share_demos() -> None:
    prog = Pipeline()
    prog.draft.predict.demos = [dspex.Example(question="q", reasoning="r", answer="a")]
    copy = prog.deepcopy()
    copy.draft.predict.demos.append(dspex.Example(question="q2", reasoning="r", answer="b"))
    assert len(prog.draft.predict.demos) == 1
    assert prog.reset_copy().draft.predict.demos == []
    assert len(prog.draft.predict.demos) == 1


def test_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog = Pipeline()
    p = prog.draft.predict
    p.signature = p.signature.with_instructions("Think, then answer with one word.")
    p.demos = [dspex.Example(question="2+2?", reasoning="add", answer="4")]
    path = prog.save(tmp_path / "prog.json")
    state = json.loads(path.read_text())
    assert state["schema_version"] == 1
    assert state["program"].endswith(":Pipeline")
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no temp left behind

    fresh = Pipeline().load(path)
    assert fresh.draft.predict.signature.instructions == "Think, then answer with one word."
    assert fresh.draft.predict.demos[0].answer == "4"
    assert fresh.dump_state() == prog.dump_state()


def test_load_rejects_other_programs_and_versions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = dspex.Predict("q -> a").save(tmp_path / "p.json")
    with pytest.raises(dspex.DataError, match="predictors"):
        Pipeline().load(path)
    state = json.loads(path.read_text())
    state["schema_version"] = 99
    (tmp_path / "v.json").write_text(json.dumps(state))
    with pytest.raises(dspex.DataError, match="schema_version 99"):
        dspex.Predict("q -> a").load(tmp_path / "v.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(dspex.DataError, match="not a dspex program file"):
        dspex.Predict("q -> a").load(tmp_path / "bad.json")
    with pytest.raises(dspex.UserError, match=r"ending in \.json"):
        dspex.Predict("q -> a").save(tmp_path / "p.pkl")


def test_predict_rejects_bad_inputs_before_any_lm_call() -> None:
    qa = dspex.Predict("question, context -> answer")
    with pytest.raises(dspex.DataError, match=r"missing input\(s\) \['context'\]"):
        qa(question="q")
    with pytest.raises(dspex.UserError, match="unexpected argument"):
        qa(question="q", context="c", extra=1)
    with pytest.raises(dspex.UserError, match="Positional arguments are not allowed"):
        qa("q")
    with pytest.raises(dspex.ConfigurationError, match="No LM is configured"):
        qa(question="q", context="c")
