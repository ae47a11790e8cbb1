"""The behaviours DSPy's own teleprompt tests check (tests/teleprompt/test_bootstrap.py,
test_random_search.py, test_teleprompt.py), against ``import dspex``.

DSPy's tests call ``compile`` several times on one tiny task; here each ``compile`` runs a
real Prefect flow (seconds), so the flow tests share one run per optimizer and check all of
DSPy's assertions about it there. The error-counting rules are checked on the bootstrap step
itself, without a flow, and once through one.
"""

from __future__ import annotations

from typing import Any

import pytest

import dspex
from dspex.errors import UnknownSettingError
from dspex.optimize import BootstrapSettings, bootstrap_demos
from dspex.optimize._search import select_best
from dspex.teleprompt import Optimizer
from dspex.testing import DummyLM


def simple_metric(example: dspex.Example, prediction: Any, trace: Any = None) -> bool:
    return bool(example.output == prediction.output)


EXAMPLES = [
    dspex.Example(input="What is the color of the sky?", output="blue").with_inputs("input"),
    dspex.Example(
        input="What does the fox say?", output="Ring-ding-ding-ding-dingeringeding!"
    ).with_inputs("input"),
]
TRAINSET = [EXAMPLES[0]]
VALSET = [EXAMPLES[1]]


class SimpleModule(dspex.Module):
    def __init__(self, signature: str) -> None:
        super().__init__()
        self.predictor = dspex.Predict(signature)

    def forward(self, **kwargs: Any) -> dspex.Prediction:
        return self.predictor(**kwargs)


class BuggyModule(dspex.Module):
    def __init__(self, signature: str) -> None:
        super().__init__()
        self.predictor = dspex.Predict(signature)

    def forward(self, **kwargs: Any) -> dspex.Prediction:
        raise RuntimeError("Simulated error")


# -- constructors and get_params (test_teleprompt.py, test_bootstrap_initialization) ----------


def test_get_params_returns_the_constructor_arguments() -> None:
    class DummyTeleprompter(Optimizer):
        name = "LabeledFewShot"

        def __init__(self, param1: int, param2: str) -> None:
            super().__init__()
            self.param1 = param1
            self.param2 = param2

    assert DummyTeleprompter(param1=1, param2="test").get_params() == {
        "param1": 1,
        "param2": "test",
    }


def test_bootstrap_initialization() -> None:
    bootstrap = dspex.BootstrapFewShot(
        metric=simple_metric, max_bootstrapped_demos=1, max_labeled_demos=1
    )
    assert bootstrap.metric == simple_metric
    assert bootstrap.get_params() == {
        "metric": simple_metric,
        "metric_threshold": None,
        "teacher_settings": {},
        "max_bootstrapped_demos": 1,
        "max_labeled_demos": 1,
        "max_rounds": 1,
        "max_errors": None,
        "seed": 0,
    }


def test_dspy_positional_order_and_defaults() -> None:
    b = dspex.BootstrapFewShot(simple_metric, 0.5, None, 2, 3, 4, 5)
    assert (b.metric_threshold, b.max_bootstrapped_demos, b.max_labeled_demos) == (0.5, 2, 3)
    assert (b.max_rounds, b.max_errors) == (4, 5)
    rs = dspex.BootstrapFewShotWithRandomSearch(simple_metric)
    assert rs.num_candidate_programs == 16  # DSPy's default
    params = rs.get_params()
    assert {"num_threads", "stop_at_score", "max_errors", "teacher_settings"} <= set(params)
    mipro = dspex.MIPROv2(simple_metric, num_threads=3, init_temperature=0.5, log_dir="x")
    assert mipro.get_params()["init_temperature"] == 0.5
    assert mipro.get_params()["auto"] == "light"
    assert dspex.LabeledFewShot(k=3).get_params()["k"] == 3
    finetune = dspex.BootstrapFinetune()  # no target: DSPy has none
    assert finetune.get_params()["metric"] is None


def test_unknown_argument_names_the_closest() -> None:
    with pytest.raises(TypeError, match="max_errors"):
        dspex.BootstrapFewShot(simple_metric, max_error=3)  # type: ignore[arg-type]


def test_teacher_settings_become_flow_parameter_values() -> None:
    teacher_lm = DummyLM([{"output": "blue"}], temperature=0.3)
    b = dspex.BootstrapFewShot(simple_metric, teacher_settings={"lm": teacher_lm})
    assert b.teacher_settings == {"lm": teacher_lm}  # as given, as DSPy keeps it
    lm = b.settings()["teacher_settings"]["lm"]
    assert lm["model"] == teacher_lm.model
    assert lm["ref"].startswith("registry:")
    with pytest.raises(UnknownSettingError, match="did you mean 'lm'"):
        dspex.BootstrapFewShot(simple_metric, teacher_settings={"llm": teacher_lm})
    with pytest.raises(ValueError, match="teacher program"):
        dspex.BootstrapFewShot(simple_metric, teacher_settings={"adapter": dspex.JSONAdapter()})


def test_mipro_refuses_requires_permission_to_run() -> None:
    mipro = dspex.MIPROv2(simple_metric)
    with pytest.raises(ValueError, match="requires_permission_to_run"):
        mipro.compile(
            SimpleModule("input -> output"), trainset=TRAINSET, requires_permission_to_run=True
        )


def test_finetune_without_target_needs_a_local_lm() -> None:
    with pytest.raises(ValueError, match="target="):
        dspex.BootstrapFinetune().compile(
            SimpleModule("input -> output"), trainset=TRAINSET, lm=DummyLM([])
        )


def test_stop_at_score_returns_what_dspys_early_stop_returns() -> None:
    scores = [("zero-shot", 10.0), ("labeled", 60.0), ("bootstrap", 50.0), ("b-0", 90.0)]
    assert select_best(scores) == "b-0"
    assert select_best(scores, stop_at_score=55.0) == "labeled"


# -- bootstrapping rules, on the step itself ---------------------------------------------------


def test_error_handling_during_bootstrap() -> None:
    """max_errors=1: the teacher's first error stops bootstrapping and is raised."""
    student, teacher = SimpleModule("input -> output"), BuggyModule("input -> output")
    settings = BootstrapSettings(max_bootstrapped_demos=1, max_labeled_demos=1, max_errors=1)
    with dspex.context(lm=DummyLM([])), pytest.raises(RuntimeError, match="Simulated error"):
        bootstrap_demos(student, teacher, EXAMPLES, simple_metric, settings)


def test_errors_below_max_errors_skip_the_example() -> None:
    student, teacher = SimpleModule("input -> output"), BuggyModule("input -> output")
    settings = BootstrapSettings(max_bootstrapped_demos=1, max_labeled_demos=1, max_errors=5)
    with dspex.context(lm=DummyLM([])):
        demos = bootstrap_demos(student, teacher, EXAMPLES, simple_metric, settings)
    assert demos.stats["bootstrapped"] == 0
    assert demos.stats["skipped"] == 2
    assert len(demos.demos["predictor"]) == 1  # topped up with a labeled example


def test_metric_threshold_filters_bootstrapped_traces() -> None:
    def half(example: dspex.Example, prediction: Any, trace: Any = None) -> float:
        return 0.5

    student, teacher = SimpleModule("input -> output"), SimpleModule("input -> output")
    lm = DummyLM([{"output": "blue"}] * 4)
    for threshold, passed in ((0.4, 1), (0.6, 0)):
        settings = BootstrapSettings(
            max_bootstrapped_demos=1, max_labeled_demos=0, metric_threshold=threshold
        )
        with dspex.context(lm=lm):
            demos = bootstrap_demos(student, teacher, TRAINSET, half, settings)
        assert demos.stats["bootstrapped"] == passed


# -- through the flows -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_bootstrap_compile_effectiveness_and_valset(tmp_path: Any) -> None:
    """test_compile_with_predict_instances, test_bootstrap_effectiveness and
    test_validation_set_usage, on one run."""
    student, teacher = SimpleModule("input -> output"), SimpleModule("input -> output")
    lm = DummyLM([{"output": "blue"}, {"output": EXAMPLES[1].output}], follow_examples=True)
    bootstrap = dspex.BootstrapFewShot(
        metric=simple_metric, max_bootstrapped_demos=1, max_labeled_demos=1
    )
    compiled = bootstrap.compile(
        student, teacher=teacher, trainset=TRAINSET, valset=VALSET, lm=lm, runs_dir=tmp_path
    )
    assert isinstance(compiled, SimpleModule) and compiled._compiled
    assert len(compiled.predictor.demos) == 1 >= len(VALSET)
    demo = compiled.predictor.demos[0]
    assert (demo.input, demo.output) == (TRAINSET[0].input, TRAINSET[0].output)
    assert student.predictor.demos == []  # the student itself is left as it was
    # follow_examples: the demo that matches the question answers it
    with dspex.context(lm=lm):
        assert compiled(input=TRAINSET[0].input).output == "blue"
    assert "What is the color of the sky?" in str(lm.requests[-1].messages)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_bootstrap_error_reaches_max_errors_through_the_flow(tmp_path: Any) -> None:
    bootstrap = dspex.BootstrapFewShot(
        metric=simple_metric, max_bootstrapped_demos=1, max_labeled_demos=1, max_errors=1
    )
    with pytest.raises(RuntimeError, match="Simulated error"):
        bootstrap.compile(
            SimpleModule("input -> output"),
            teacher=BuggyModule("input -> output"),
            trainset=TRAINSET,
            valset=VALSET,
            lm=DummyLM([]),
            runs_dir=tmp_path,
        )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_random_search_basic_workflow_with_teacher_settings(tmp_path: Any) -> None:
    """test_basic_workflow, with the teacher on its own LM through ``teacher_settings``: the
    task LM answers wrongly, so only the teacher's LM can bootstrap a demo."""
    answers = {"sky": {"output": "blue"}, "fox": {"output": EXAMPLES[1].output}}
    teacher_lm = DummyLM(answers, temperature=0.3)
    task_lm = DummyLM({"": {"output": "no idea"}})
    optimizer = dspex.BootstrapFewShotWithRandomSearch(
        metric=simple_metric,
        max_bootstrapped_demos=1,
        max_labeled_demos=0,
        num_candidate_programs=1,
        num_threads=2,
        teacher_settings={"lm": teacher_lm},
    )
    optimizer.compile(
        SimpleModule("input -> output"),
        teacher=SimpleModule("input -> output"),
        trainset=EXAMPLES,
        lm=task_lm,
        runs_dir=tmp_path,
    )
    result = optimizer.last_result
    assert result is not None
    ids = [c["id"] for c in result.candidates]
    assert ids[:3] == ["zero-shot", "labeled", "bootstrap"] and len(ids) == 4
    assert teacher_lm.request_count >= 1
    assert next(c for c in result.candidates if c["id"] == "bootstrap")["demos"] == 1
