"""Saving without a tracking server: built-in programs, LMs that cannot be rebuilt, what is
refused, and how the pyfunc model reads inputs and reports failing rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dspex
import dspex.mlflow
from dspex.errors import ConfigurationError, UserError
from dspex.integrations.mlflow._loader import DspexPyfuncModel
from dspex.testing import DummyLM, SimulatedLM
from tests.integrations.programs import ArithmeticQA, sim_lm


def test_builtin_chain_of_thought_round_trips(tmp_path: Path) -> None:
    program = dspex.ChainOfThought("question -> answer: int, confidence: float", lm=sim_lm())
    program.predict.demos = [dspex.Example(question="1+1?", reasoning="1+1", answer=2)]
    dspex.mlflow.save_model(program, tmp_path / "cot")

    loaded = dspex.mlflow.load_model(str(tmp_path / "cot"))
    assert isinstance(loaded, dspex.ChainOfThought)
    assert loaded.dump_state() == program.dump_state()
    assert loaded.predict.signature.output_fields["confidence"].annotation is float
    flavor = json.loads((tmp_path / "cot" / "data" / "dspex" / "dspex.json").read_text())
    assert flavor["program_ref"] == "dspex:ChainOfThought"
    assert flavor["program_args"] == {
        "signature": "question: str -> answer: int, confidence: float"
    }


def test_builtin_with_constraints_needs_a_program_ref(tmp_path: Path) -> None:
    class Positive(dspex.Signature):
        question: str = dspex.InputField()
        answer: int = dspex.OutputField(ge=0)

    with pytest.raises(UserError, match="program_ref="):
        dspex.mlflow.save_model(dspex.Predict(Positive), tmp_path / "p")


def test_test_double_lms_fall_back_to_the_context_lm(tmp_path: Path) -> None:
    program = ArithmeticQA()
    program.set_lm(SimulatedLM("arithmetic", latency=0.0))  # an in-process transport
    dspex.mlflow.save_model(program, tmp_path / "m")

    loaded = dspex.mlflow.load_model(str(tmp_path / "m"))
    assert loaded.predictors()[0].lm is None
    with pytest.raises(ConfigurationError, match="No LM is configured"):
        loaded(question="What is 2 + 2?")
    with dspex.context(lm=DummyLM([{"reasoning": "2+2", "answer": "4"}])):
        assert loaded(question="What is 2 + 2?").answer == 4

    override = SimulatedLM("arithmetic", latency=0.0)
    assert dspex.mlflow.load_model(str(tmp_path / "m"), lm=override).predictors()[0].lm is override


def test_input_example_keeps_only_inputs_of_examples(tmp_path: Path) -> None:
    example = dspex.Example(question="What is 2 + 2?", answer=4).with_inputs("question")
    dspex.mlflow.save_model(ArithmeticQA(), tmp_path / "m", input_example=[example])
    saved = json.loads((tmp_path / "m" / "input_example.json").read_text())
    assert saved == {"columns": ["question"], "data": [["What is 2 + 2?"]]}


def test_input_example_must_fit_the_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing \['question'\], unknown \['query'\]"):
        dspex.mlflow.save_model(ArithmeticQA(), tmp_path / "m", input_example={"query": "2+2?"})


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("sk-live-abcdefgh1234567890", "a string shaped like a provider key"),
        ("my-registered-secret-value-123", "an LM's api_key"),
    ],
)
def test_state_with_a_secret_is_refused(tmp_path: Path, text: str, what: str) -> None:
    dspex.LM("openai/gpt-4o-mini", api_key="my-registered-secret-value-123")  # registers it
    program = ArithmeticQA()
    program.solve.predict.demos = [dspex.Example(question="key?", answer=f"it is {text}")]
    with pytest.raises(UserError, match=f"'solve.predict' holds {what}"):
        dspex.mlflow.save_model(program, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_prose_about_bearer_tokens_is_not_a_secret(tmp_path: Path) -> None:
    program = ArithmeticQA()
    program.solve.predict.demos = [
        dspex.Example(question="How to call it?", answer="Bearer authentication, see sk-learn")
    ]
    dspex.mlflow.save_model(program, tmp_path / "m")


def test_only_programs_with_predictors_are_logged(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"dspex\.Module"):
        dspex.mlflow.save_model("question -> answer", tmp_path / "a")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="no predictors"):
        dspex.mlflow.save_model(dspex.Module(), tmp_path / "b")


def test_loading_a_model_of_another_flavor_says_so(tmp_path: Path) -> None:
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(
        str(tmp_path / "other"),
        loader_module="json",
        pip_requirements=["mlflow"],
    )
    with pytest.raises(UserError, match="not a dspex model"):
        dspex.mlflow.load_model(str(tmp_path / "other"))


class _FailsOnBoom(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = dspex.Predict("question -> answer", lm=DummyLM({"ok": {"answer": "fine"}}))

    def forward(self, question: str) -> Any:
        if question == "boom":
            raise ValueError("the program failed")
        return self.p(question=question)


def test_predict_accepts_records_a_dict_and_dataframes() -> None:
    import pandas as pd

    model = DspexPyfuncModel(_FailsOnBoom(), outputs=["answer"])
    assert model.predict({"question": "ok"})["answer"].tolist() == ["fine"]
    frame = pd.DataFrame({"question": ["ok", "ok too"]})
    assert model.predict(frame)["answer"].tolist() == ["fine", "fine"]
    assert list(model.predict([]).columns) == ["answer"]
    with pytest.raises(UserError, match="DataFrame"):
        model.predict("ok")


def test_predict_raises_the_failing_rows_error_naming_the_row() -> None:
    model = DspexPyfuncModel(_FailsOnBoom(), outputs=["answer"])
    with pytest.raises(ValueError, match="the program failed") as info:
        model.predict([{"question": "ok"}, {"question": "boom"}, {"question": "boom"}])
    assert "input row 1 of 3" in "".join(info.value.__notes__)
    assert "2 row(s) failed" in "".join(info.value.__notes__)


_SHIPPED = """
import dspex


class Shipped(dspex.Module):
    def __init__(self):
        super().__init__()
        self.p = dspex.Predict("question -> answer")

    def forward(self, question):
        return self.p(question=question)
"""


def test_code_paths_ship_the_program_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    source = tmp_path / "src" / "dspex_shipped_program.py"
    source.parent.mkdir()
    source.write_text(_SHIPPED)
    monkeypatch.syspath_prepend(str(source.parent))
    from dspex_shipped_program import Shipped  # type: ignore[import-not-found]

    dspex.mlflow.save_model(Shipped(), tmp_path / "m", code_paths=[str(source)])
    assert (tmp_path / "m" / "code" / source.name).is_file()
    # The loading process has only the model directory, not the source tree.
    monkeypatch.delitem(sys.modules, "dspex_shipped_program")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(source.parent)])
    source.unlink()

    loaded = dspex.mlflow.load_model(str(tmp_path / "m"))
    assert type(loaded).__name__ == "Shipped"
    assert type(loaded).__module__ == "dspex_shipped_program"
