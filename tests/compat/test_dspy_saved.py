"""Programs saved by DSPy 3.4 load into dspex, send DSPy's prompts, and save back for DSPy.

The fixtures under ``dspy_saved/`` were written by DSPy itself
(``benchmarks/dspy_saved_programs.py``): ``<name>.json`` is ``program.save(...)``'s output and
``<name>.prompts.json`` the messages DSPy's ChatAdapter builds after loading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dspex
from dspex.errors import DataError, ProgramIntegrityError, UserError
from dspex.testing import DummyLM
from tests.compat.dspy_programs import PROGRAMS

SAVED = Path(__file__).parent / "dspy_saved"
NAMES = sorted(PROGRAMS)


def _saved(name: str) -> dict[str, Any]:
    return json.loads((SAVED / f"{name}.json").read_text())


def _by_predictor(state: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in state.items() if k != "metadata"}
    return {"self": body} if "signature" in body else body


@pytest.mark.parametrize("name", NAMES)
def test_a_dspy_saved_program_loads_its_instructions_and_demos(name: str) -> None:
    program = PROGRAMS[name]().load(SAVED / f"{name}.json")
    saved = _by_predictor(_saved(name))
    assert [n for n, _ in program.named_predictors()] == list(saved)
    for predictor_name, predictor in program.named_predictors():
        entry = saved[predictor_name]
        assert predictor.signature.instructions == entry["signature"]["instructions"]
        assert [d.to_dict() for d in predictor.demos] == entry["demos"]


def test_field_descriptions_come_from_the_file_and_dspy_placeholders_do_not() -> None:
    program = PROGRAMS["cot_qa"]().load(SAVED / "cot_qa.json")
    fields = program.predict.signature.fields
    assert fields["question"].desc == "a trivia question"
    assert fields["answer"].desc == "a short answer"
    # DSPy writes "${reasoning}" for a field without its own description.
    assert (
        fields["reasoning"].desc
        == dspex.ChainOfThought("q -> a").predict.signature.fields["reasoning"].desc
    )


def test_the_model_settings_load_but_the_endpoint_in_the_file_is_ignored() -> None:
    assert _saved("cot_qa")["predict"]["lm"]["api_base"] == "http://10.9.9.9:1/v1"
    program = PROGRAMS["cot_qa"]().load(SAVED / "cot_qa.json")
    config = program.predict.lm.dump_config()
    assert config["model"] == "openai/gpt-4o-mini"
    assert config["kwargs"] == {"temperature": 0.3, "max_tokens": 300}
    assert config["api_base"] is None  # where prompts go is this process's decision


@pytest.mark.parametrize("name", NAMES)
def test_a_loaded_program_sends_the_prompts_dspy_sends(name: str) -> None:
    golden = json.loads((SAVED / f"{name}.prompts.json").read_text())
    program = PROGRAMS[name]().load(SAVED / f"{name}.json")
    for predictor_name, predictor in program.named_predictors():
        case = golden[predictor_name]
        outputs = {
            n: {"bool": True, "int": 1, "float": 0.5}.get(f.type_name, "positive")
            for n, f in predictor.signature.output_fields.items()
        }
        lm = DummyLM([outputs])
        predictor(**case["inputs"], lm=lm)
        sent = [dict(m) for m in lm.requests[-1].messages]
        assert sent == case["messages"], predictor_name


@pytest.mark.parametrize("name", NAMES)
def test_save_in_dspy_format_writes_what_dspy_wrote(name: str, tmp_path: Path) -> None:
    program = PROGRAMS[name]().load(SAVED / f"{name}.json")
    path = program.save(tmp_path / "out.json", format="dspy")
    written, original = json.loads(path.read_text()), _saved(name)
    assert set(written) == set(original)
    assert written["metadata"]["dependency_versions"]["dspy"] == "3.4.1"
    for predictor_name, entry in _by_predictor(original).items():
        mine = _by_predictor(written)[predictor_name]
        assert mine["signature"] == entry["signature"]
        assert mine["demos"] == entry["demos"]
        if entry["lm"] is None:
            assert mine["lm"] is None
        else:  # the model and request settings; never the endpoint
            assert "api_base" not in mine["lm"]
            for key in ("model", "temperature", "max_tokens"):
                assert mine["lm"][key] == entry["lm"][key]
    # And dspex reads its own DSPy-format file back to the same state.
    again = PROGRAMS[name]().load(path)
    assert again.dump_state()["predictors"] == program.dump_state()["predictors"]


def test_a_dspy_file_loaded_into_another_structure_names_both() -> None:
    with pytest.raises(DataError, match=r"'checks\[0\]'.*'self'"):
        dspex.Predict("question -> answer").load(SAVED / "draft_then_answer.json")


def test_a_dspy_file_loaded_into_another_signature_says_so() -> None:
    with pytest.raises(DataError, match="3 fields but the predictor's signature has 2"):
        dspex.Predict("question -> answer").load(SAVED / "classify.json")


def test_an_edited_dspy_file_with_a_bad_demo_list_is_a_data_error(tmp_path: Path) -> None:
    state = _saved("predict_qa")
    state["demos"] = "not a list"
    (tmp_path / "p.json").write_text(json.dumps(state))
    with pytest.raises(DataError, match="'demos' must be a list"):
        dspex.Predict("question -> answer").load(tmp_path / "p.json")


def test_whole_program_pickles_are_neither_written_nor_read(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pickle"):
        dspex.Predict("q -> a").save(tmp_path / "p.json", save_program=True)
    with pytest.raises(UserError, match="format='dspex' or format='dspy'"):
        dspex.Predict("q -> a").save(tmp_path / "p.json", format="pickle")


def test_a_dspex_file_still_needs_its_manifest(tmp_path: Path) -> None:
    path = dspex.Predict("q -> a").save(tmp_path / "p.json")
    state = json.loads(path.read_text())
    del state["manifest"]
    path.write_text(json.dumps(state))
    with pytest.raises(ProgramIntegrityError):
        dspex.Predict("q -> a").load(path)
