"""A metric with a programming error stops an optimizer at once: ``MetricError`` (a dspex
error) whose cause is the metric's own ``TypeError``/``AttributeError``/``KeyError``, after no
more LM calls than the first window of examples in flight — not bootstraps and trials that
all fail. LM requests are counted by the simulated provider's HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import dspex
from dspex.errors import MetricError
from dspex.testing import DummyLM, SimulatedLM, fetch_stats, serve
from tests.flows.programs import DEV, TASK, TRAIN, solver

CONCURRENCY = 2  # examples in flight per step: what one step may spend before its metric runs


def type_error(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> bool:
    return bool(example.answer + "" == prediction.answer)  # int + str


def attribute_error(
    example: dspex.Example, prediction: dspex.Prediction, trace: Any = None
) -> bool:
    return bool(example.answer == prediction.anwser)  # misspelt field


def key_error(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> bool:
    return bool(example.answer == {"answer": prediction.answer}["anwser"])


BROKEN: dict[type[Exception], Callable[..., bool]] = {
    TypeError: type_error,
    AttributeError: attribute_error,
    KeyError: key_error,
}


@pytest.fixture
def url() -> Iterator[str]:
    with serve(SimulatedLM(task=TASK)) as srv:
        yield srv.url


def _compile(url: str, optimizer: Any, **data: Any) -> None:
    lm = dspex.LM("openai/sim", api_base=url, api_key="x", num_retries=0)
    optimizer.compile(solver(), lm=lm, concurrency=CONCURRENCY, **data)


def _stopped_by(error: type[Exception], info: pytest.ExceptionInfo[MetricError]) -> None:
    assert isinstance(info.value.__cause__, error), "the metric's own error is the cause"
    message = str(info.value)
    assert f"raised {error.__name__}" in message and "stopped" in message
    assert BROKEN[error].__name__ in message


@pytest.mark.slow
@pytest.mark.parametrize("error", list(BROKEN))
def test_bootstrap_fewshot_stops_at_the_first_metric_bug(url: str, error: type[Exception]) -> None:
    opt = dspex.BootstrapFewShot(BROKEN[error], max_bootstrapped_demos=2, max_labeled_demos=2)
    with pytest.raises(MetricError) as info:
        _compile(url, opt, trainset=TRAIN)
    _stopped_by(error, info)
    # One window of the trainset's 40 examples was in flight when the metric first ran.
    assert fetch_stats(url)["requests"] <= CONCURRENCY


@pytest.mark.slow
def test_random_search_stops_at_the_first_metric_bug(url: str) -> None:
    opt = dspex.BootstrapFewShotWithRandomSearch(
        BROKEN[KeyError], num_candidate_programs=4, max_bootstrapped_demos=2, max_labeled_demos=2
    )
    with pytest.raises(MetricError) as info:
        _compile(url, opt, trainset=TRAIN, valset=DEV)
    _stopped_by(KeyError, info)
    # One window per bootstrap (the 5 start together); no candidate reaches the valset, whose
    # 7 evaluations alone would take 7 x 60 calls.
    assert fetch_stats(url)["requests"] <= 5 * CONCURRENCY


@pytest.mark.slow
@pytest.mark.parametrize("demos", [2, 0], ids=["bootstrapped", "zero-shot"])
def test_miprov2_stops_at_the_first_metric_bug(url: str, demos: int) -> None:
    opt = dspex.MIPROv2(
        BROKEN[TypeError],
        auto=None,
        num_candidates=3,
        num_trials=6,
        max_bootstrapped_demos=demos,
        max_labeled_demos=demos,
        minibatch_size=10,
        seed=0,
    )
    with pytest.raises(MetricError) as info:
        _compile(url, opt, trainset=TRAIN, valset=DEV)
    _stopped_by(TypeError, info)
    # The baseline evaluation and the bootstrap (the other candidates are zero-shot and
    # labeled) run at once: one window each, and in the evaluation a row or two more may
    # start in the slot a failing row leaves before the stop reaches them. The trials and
    # full evaluations (6 x 10 + 60 calls at least) never start.
    # Zero-shot has nothing to bootstrap (no teacher call, as in DSPy): the bug surfaces in
    # the baseline evaluation, which the flow does not wait for, so the proposal (a summary,
    # a description, 2 instructions) and the first batch of trials (4 x one window) may
    # have started by then; the rest of the search never does.
    bound = 3 * CONCURRENCY if demos else 3 * CONCURRENCY + 4 + 4 * CONCURRENCY
    assert fetch_stats(url)["requests"] <= bound


def test_an_async_metric_bug_is_stopped_too() -> None:
    from dspex.optimize._metric import stop_on_programming_errors

    async def judged(
        example: dspex.Example, prediction: dspex.Prediction, trace: Any = None
    ) -> bool:
        await asyncio.sleep(0)
        return example.answer == prediction.anwser

    checked = stop_on_programming_errors(judged)
    with pytest.raises(MetricError) as info:
        asyncio.run(checked(dspex.Example(id=7, answer=1), dspex.Prediction(answer=1)))
    assert isinstance(info.value.__cause__, AttributeError)
    assert info.value.row_id == 7 and "id 7" in str(info.value)


def test_other_metric_errors_and_bad_values_keep_their_handling() -> None:
    """A ValueError stays a failed row of an evaluation; NaN stays a MetricError naming the
    row (tests/reliability/test_bad_data.py has the full cases)."""
    from dspex.optimize._metric import stop_on_programming_errors

    def flaky(example: dspex.Example, prediction: dspex.Prediction, trace: Any = None) -> float:
        if example.id == 0:
            raise ValueError("grader unavailable")
        return float("nan") if example.id == 2 else 1.0

    dev = [dspex.Example(id=i, question="q", answer="a").with_inputs("question") for i in (0, 1)]
    program = dspex.Predict("question -> answer", lm=DummyLM([{"answer": "a"}] * 3))
    result = dspex.Evaluate(devset=dev, metric=stop_on_programming_errors(flaky), progress=False)(
        program
    )
    assert (result.n, result.n_errors) == (2, 1)
    assert isinstance(result.errors[0].exception, ValueError)
    nan_row = [dspex.Example(id=2, question="q", answer="a").with_inputs("question")]
    with pytest.raises(MetricError, match="row 2"):
        dspex.Evaluate(devset=nan_row, metric=stop_on_programming_errors(flaky), progress=False)(
            program
        )
