"""The dspex flavor on a real MLflow (SQLite): log, load in-process and in a fresh process,
no pickle, no secrets, and programs that cannot be rebuilt elsewhere are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import dspex
import dspex.mlflow
from dspex.datasets import load_task
from dspex.errors import ProgramIntegrityError, UserError
from dspex.integrations.mlflow._flavor import LOADER_MODULE
from tests.integrations.conftest import Tracking
from tests.integrations.programs import ArithmeticQA, NeedsArgs

REPO = Path(__file__).resolve().parents[2]
SENTINEL = f"sk-test-SENTINEL-{uuid.uuid4().hex}"
MODEL = "qa-flavor"
INSTRUCTIONS = "Solve the word problem; compute the arithmetic carefully."


@dataclass(frozen=True)
class Logged:
    program: ArithmeticQA
    run_id: str
    model_uri: str
    version: str
    questions: list[str]
    answers: list[int]


@pytest.fixture(scope="module")
def logged(tracking: Tracking) -> Logged:
    """An optimized-looking program (instructions, a demo, an LM with a secret key), logged,
    registered and aliased ``champion``."""
    import mlflow

    mlflow.set_tracking_uri(tracking.uri)
    examples = load_task("arithmetic").examples
    program = ArithmeticQA()
    program.set_lm(dspex.LM("dspex-sim/arithmetic", api_key=SENTINEL, temperature=0.0))
    predict = program.solve.predict
    predict.signature = predict.signature.with_instructions(INSTRUCTIONS)
    predict.demos = [examples[10]]
    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        mlflow.log_param("task", "arithmetic")
        info = dspex.mlflow.log_model(
            program,
            registered_model_name=MODEL,
            input_example={"question": examples[0].question},
        )
    version = str(info.registered_model_version)
    dspex.mlflow.set_alias(MODEL, "champion", version)
    return Logged(
        program,
        run.info.run_id,
        info.model_uri,
        version,
        [e.question for e in examples[:4]],
        [e.answer for e in examples[:4]],
    )


def _artifact_dir(tracking: Tracking, model_uri: str) -> Path:
    model_id = model_uri.removeprefix("models:/")
    [found] = list(tracking.runs_dir.glob(f"mlartifacts/*/models/{model_id}/artifacts"))
    return found


def test_round_trip_keeps_instructions_demos_and_lm(logged: Logged) -> None:
    loaded = dspex.mlflow.load_model(f"models:/{MODEL}@champion")

    assert isinstance(loaded, ArithmeticQA)
    assert loaded.dump_state() == logged.program.dump_state()
    predict = loaded.solve.predict
    assert predict.signature.instructions == INSTRUCTIONS
    assert [d.to_dict() for d in predict.demos] == [logged.program.solve.predict.demos[0].to_dict()]
    assert predict.lm.model == "dspex-sim/arithmetic"
    assert predict.lm.kwargs == {"temperature": 0.0}
    assert predict.signature.output_fields["answer"].annotation is int


def test_logging_does_not_call_the_lm(logged: Logged) -> None:
    # An input example was given; MLflow's serving-input validation would have run the model.
    assert len(logged.program.solve.predict.lm.history) == 0


def test_pyfunc_predict_in_process(logged: Logged) -> None:
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(logged.model_uri)
    out = model.predict(pd.DataFrame({"question": logged.questions[:2]}))
    assert list(out.columns) == ["reasoning", "answer"]
    assert len(out) == 2
    assert isinstance(model.get_raw_model(), ArithmeticQA)
    schema = model.metadata.get_input_schema()
    assert [(c.name, c.required) for c in schema.inputs] == [("question", True), ("hint", False)]
    with_hint = model.predict([{"question": logged.questions[0], "hint": "add"}])
    assert len(with_hint) == 1


def test_fresh_process_loads_champion_and_answers(
    logged: Logged, tracking: Tracking, tmp_path: Path
) -> None:
    script = (
        "import json, sys, mlflow\n"
        "model = mlflow.pyfunc.load_model('models:/qa-flavor@champion')\n"
        "out = model.predict(json.loads(sys.argv[1]))\n"
        "print(json.dumps({'answers': out['answer'].tolist(),"
        " 'modules': sorted(m for m in sys.modules if 'pickle' in m and 'dspex' in m)}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": tracking.uri,
        # A fresh process imports the program's module only if it is allowed to.
        "DSPEX_ALLOWED_MODULES": "tests.integrations",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DSPEX_CACHE_DIR": str(tmp_path / "cache"),
    }
    records = json.dumps([{"question": q} for q in logged.questions])
    done = subprocess.run(
        [sys.executable, "-c", script, records],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    answers = result["answers"]
    assert len(answers) == len(logged.questions)
    assert all(isinstance(a, int) for a in answers)
    # The simulated model is deterministic and good at this task with a demo and reasoning.
    assert sum(a == gold for a, gold in zip(answers, logged.answers)) >= 2


def test_no_secret_reaches_artifacts_params_or_tags(logged: Logged, tracking: Tracking) -> None:
    import mlflow

    needle = SENTINEL.encode()
    files = [p for p in tracking.runs_dir.rglob("*") if p.is_file()]
    assert any(p.name == "program.json" for p in files)
    assert any(p.name == "mlflow.db" for p in files)
    leaked = [str(p) for p in files if needle in p.read_bytes()]
    assert leaked == []

    client = mlflow.MlflowClient()
    run = client.get_run(logged.run_id)
    version = client.get_model_version(MODEL, logged.version)
    model = client.get_logged_model(logged.model_uri.removeprefix("models:/"))
    texts = [run.data.params, run.data.tags, version.tags, model.params, model.tags]
    assert all(SENTINEL not in json.dumps(t) for t in texts)


def test_mlmodel_uses_loader_module_not_pickle(logged: Logged, tracking: Tracking) -> None:
    directory = _artifact_dir(tracking, logged.model_uri)
    text = (directory / "MLmodel").read_text()
    mlmodel = yaml.safe_load(text)
    pyfunc = mlmodel["flavors"]["python_function"]

    assert pyfunc["loader_module"] == LOADER_MODULE
    assert "python_model" not in pyfunc
    assert "pickle" not in text.lower()
    assert not [p for p in directory.rglob("*") if p.suffix in {".pkl", ".pickle", ".cloudpickle"}]
    flavor = mlmodel["flavors"]["dspex"]
    assert flavor["program_ref"] == "tests.integrations.programs:ArithmeticQA"
    assert flavor["state_schema_version"] == 1
    assert flavor["dspex_version"] == dspex.__version__
    assert json.loads((directory / "data/dspex/program.json").read_text())["predictors"]


def test_program_from_main_is_refused_before_logging(tracking: Tracking) -> None:
    import mlflow

    class Script(ArithmeticQA):
        pass

    Script.__module__ = "__main__"
    Script.__qualname__ = "Script"
    with (
        mlflow.start_run(experiment_id=tracking.experiment_id) as run,
        pytest.raises(UserError, match=r"importable module.*program_ref="),
    ):
        dspex.mlflow.log_model(Script())
    outputs = mlflow.MlflowClient().get_run(run.info.run_id).outputs
    assert outputs is None or outputs.model_outputs == []


def test_locally_defined_program_is_refused() -> None:
    class Local(dspex.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = dspex.Predict("question -> answer")

        def forward(self, question: str) -> Any:
            return self.p(question=question)

    with pytest.raises(UserError, match="defined in a function"):
        dspex.mlflow.log_model(Local())


def test_program_ref_names_a_factory(tracking: Tracking) -> None:
    import mlflow

    program = NeedsArgs("question -> answer")
    with pytest.raises(UserError, match="zero-argument factory"):
        dspex.mlflow.log_model(program)
    with mlflow.start_run(experiment_id=tracking.experiment_id):
        info = dspex.mlflow.log_model(
            program, program_ref="tests.integrations.programs:make_needs_args"
        )
    # A factory is a function: it is called only from a module the loader allows.
    with pytest.raises(ProgramIntegrityError, match=r"not a dspex\.Module subclass"):
        dspex.mlflow.load_model(info.model_uri)
    loaded = dspex.mlflow.load_model(info.model_uri, allowed_modules=["tests.integrations"])
    assert isinstance(loaded, NeedsArgs)
    assert loaded.predict.signature.signature == "question -> answer"


def test_logging_from_a_worker_thread_with_run_id(tracking: Tracking) -> None:
    import threading

    import mlflow

    run = mlflow.MlflowClient().create_run(tracking.experiment_id)
    infos: list[Any] = []
    worker = threading.Thread(
        target=lambda: infos.append(
            dspex.mlflow.log_model(ArithmeticQA(), name="child", run_id=run.info.run_id)
        )
    )
    worker.start()
    worker.join()
    assert infos and infos[0].run_id == run.info.run_id
    # In the run's experiment, so its artifacts are under the pinned location, not under
    # the Default experiment's ./mlruns.
    model = mlflow.MlflowClient().get_logged_model(infos[0].model_id)
    assert model.experiment_id == tracking.experiment_id
    assert model.artifact_location.startswith(tracking.runs_dir.as_uri())
    outputs = mlflow.MlflowClient().get_run(run.info.run_id).outputs
    assert [o.model_id for o in outputs.model_outputs] == [infos[0].model_id]
    assert dspex.mlflow.register(run.info.run_id, "qa-thread", artifact_path="child")
