"""``save(dir, save_program=True)`` and ``dspex.load(dir)``: whole programs, without pickle."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

import dspex
from dspex.errors import DataError, ProgramIntegrityError, UserError
from dspex.primitives._program_file import seal
from dspex.testing import DummyLM
from tests.compat.dspy_programs import DraftThenAnswer


def _tuned() -> DraftThenAnswer:
    program = DraftThenAnswer()
    program.answer.demos = [dspex.Example(question="1+1?", draft="1+1", answer=2)]
    program.draft.predict.signature = program.draft.predict.signature.with_instructions("Draft it.")
    return program


def test_a_whole_program_saves_to_a_directory_and_loads_as_the_same_program(
    tmp_path: Path,
) -> None:
    program = _tuned()
    directory = program.save(tmp_path / "prog", save_program=True)
    assert sorted(p.name for p in directory.iterdir()) == ["program.json"]

    loaded = dspex.load(directory)
    assert type(loaded) is DraftThenAnswer
    assert loaded.dump_state()["predictors"] == program.dump_state()["predictors"]
    lm = DummyLM([{"reasoning": "r", "draft": "2*3"}, {"answer": 6}])
    with dspex.context(lm=lm):
        assert loaded(question="2*3?").answer == 6


@pytest.mark.parametrize(
    "build",
    [
        lambda: dspex.Predict("question -> answer: int"),
        lambda: dspex.ChainOfThought("question, context: list[str] -> answer"),
    ],
)
def test_built_in_predictors_are_rebuilt_from_their_signature(build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    program = build()
    program.save(tmp_path / "p", save_program=True)
    loaded = dspex.load(tmp_path / "p")
    assert type(loaded) is type(program)
    assert loaded.dump_state()["predictors"] == program.dump_state()["predictors"]


def _plant(directory: Path, ref: str, args: dict[str, object] | None = None) -> None:
    """A program.json naming ``ref``, re-sealed so the manifest check passes."""
    directory.mkdir(parents=True, exist_ok=True)
    state = dspex.Predict("q -> a").dump_state()
    body = {"program_ref": ref, "program_args": args or {}, "state": state}
    (directory / "program.json").write_text(seal(body))


def test_a_file_naming_a_function_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _plant(tmp_path / "p", "os:system", {"command": f"touch {marker}"})
    with pytest.raises(ProgramIntegrityError, match=r"not a dspex\.Module subclass"):
        dspex.load(tmp_path / "p")
    assert not marker.exists()


def test_a_module_this_process_has_not_imported_needs_allowed_modules(tmp_path: Path) -> None:
    package = tmp_path / "src" / "userprogs_dspex_test"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            import dspex

            class Solver(dspex.Module):
                def __init__(self):
                    super().__init__()
                    self.predict = dspex.Predict("q -> a")

                def forward(self, q):
                    return self.predict(q=q)
            """
        )
    )
    (tmp_path / "p").mkdir()
    state = {
        "schema_version": 1,
        "program": "userprogs_dspex_test:Solver",
        "predictors": {"predict": dspex.Predict("q -> a").dump_state()["predictors"]["self"]},
    }
    body = {"program_ref": "userprogs_dspex_test:Solver", "program_args": {}, "state": state}
    (tmp_path / "p" / "program.json").write_text(seal(body))
    sys.path.insert(0, str(tmp_path / "src"))
    try:
        with pytest.raises(
            ProgramIntegrityError, match=r"allowed_modules=\['userprogs_dspex_test'\]"
        ):
            dspex.load(tmp_path / "p")
        assert "userprogs_dspex_test" not in sys.modules  # refused before importing it
        loaded = dspex.load(tmp_path / "p", allowed_modules=["userprogs_dspex_test"])
        assert type(loaded).__name__ == "Solver"
    finally:
        sys.path.remove(str(tmp_path / "src"))
        sys.modules.pop("userprogs_dspex_test", None)


def test_an_edited_program_file_is_refused(tmp_path: Path) -> None:
    directory = _tuned().save(tmp_path / "p", save_program=True)
    path = directory / "program.json"
    body = json.loads(path.read_text())
    body["state"]["predictors"]["answer"]["demos"][0]["answer"] = 3
    path.write_text(json.dumps(body))
    with pytest.raises(ProgramIntegrityError, match="does not match its manifest"):
        dspex.load(directory)
    assert dspex.load(directory, verify=False).answer.demos[0].answer == 3


def test_dspy_whole_program_pickles_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "program.pkl").write_bytes(b"\x80\x05K\x01.")
    with pytest.raises(DataError, match="pickle"):
        dspex.load(tmp_path / "p")


def test_bad_paths_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="directory"):
        dspex.Predict("q -> a").save(tmp_path / "p.json", save_program=True)
    with pytest.raises(UserError, match=r"program.load\(path\)"):
        dspex.load(tmp_path / "missing.json")
    with pytest.raises(UserError, match="format='dspy'"):
        dspex.Predict("q -> a").save(tmp_path / "d", save_program=True, format="dspy")


def test_a_class_that_needs_arguments_fails_at_save_time(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot be rebuilt"):
        _NeedsArgs(3).save(tmp_path / "p", save_program=True)
    assert not (tmp_path / "p").exists()


class _NeedsArgs(dspex.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.predict = dspex.Predict("q -> a")
        self.k = k
