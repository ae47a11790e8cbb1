"""Fault injection: typed errors, Retry-After, unparseable output, retries that succeed."""

from __future__ import annotations

import time

import pytest

from dspex.datasets import load_task
from dspex.errors import LMRateLimitError, LMServerError, LMTimeoutError, UserError
from dspex.testing import Faults, SimulatedLM

from .prompts import chat_prompt, parse_answer

QUESTIONS = [ex.question for ex in load_task("arithmetic").examples[:40]]


def test_429_carries_retry_after() -> None:
    lm = SimulatedLM(faults=Faults(rate_429=1.0, retry_after=0.25), num_retries=0, cache=False)
    with pytest.raises(LMRateLimitError) as info:
        lm.forward(chat_prompt(QUESTIONS[0]))
    assert info.value.status == 429 and info.value.retry_after == 0.25
    assert info.value.retryable


def test_500_and_hang_become_typed_errors() -> None:
    lm = SimulatedLM(faults=Faults(rate_500=1.0), num_retries=0, cache=False)
    with pytest.raises(LMServerError):
        lm.forward(chat_prompt(QUESTIONS[0]))
    hung = SimulatedLM(faults=Faults(rate_hang=1.0), num_retries=0, timeout=0.05, cache=False)
    start = time.perf_counter()
    with pytest.raises(LMTimeoutError):
        hung.forward(chat_prompt(QUESTIONS[0]))
    assert time.perf_counter() - start >= 0.05


def test_malformed_and_truncated_output_is_unparseable() -> None:
    for faults, reason in (
        (Faults(rate_malformed=1.0), "stop"),
        (Faults(rate_truncated=1.0), "length"),
    ):
        lm = SimulatedLM(faults=faults, cache=False)
        for q in QUESTIONS[:5]:
            for json_mode in (False, True):
                kwargs = {"response_format": {"type": "json_object"}} if json_mode else {}
                response = lm.forward(chat_prompt(q, reasoning=True), **kwargs)
                assert parse_answer(response.outputs[0]) is None, response.outputs[0]
                assert response.finish_reasons[0] == reason
        assert "[[ ##" not in SimulatedLM(faults=Faults(rate_malformed=1.0))(QUESTIONS[0])[0]


def test_retries_succeed_when_faults_are_partial() -> None:
    lm = SimulatedLM(
        faults=Faults(rate_429=0.3, rate_500=0.2), num_retries=8, retry_backoff=(0, 0), cache=False
    )
    for q in QUESTIONS:
        assert parse_answer(lm.forward(chat_prompt(q)).outputs[0]) is not None
    assert lm.request_count > len(QUESTIONS)  # some were retried


def test_faults_are_reproducible_across_instances() -> None:
    def pattern() -> list[str]:
        lm = SimulatedLM(faults=Faults(rate_500=0.5), num_retries=0, cache=False)
        out = []
        for q in QUESTIONS:
            try:
                lm.forward(chat_prompt(q))
                out.append("ok")
            except LMServerError:
                out.append("500")
        return out

    first = pattern()
    assert first == pattern() and "ok" in first and "500" in first


def test_latency() -> None:
    lm = SimulatedLM(latency=0.05, cache=False)
    start = time.perf_counter()
    lm.forward(chat_prompt(QUESTIONS[0]))
    assert time.perf_counter() - start >= 0.05


def test_faults_validation_and_parsing() -> None:
    with pytest.raises(UserError):
        Faults(rate_429=0.7, rate_500=0.7)
    with pytest.raises(UserError):
        Faults(rate_hang=-0.1)
    assert Faults.from_string("429=0.1,retry_after=2") == Faults(rate_429=0.1, retry_after=2.0)
    with pytest.raises(UserError, match="Unknown fault"):
        Faults.from_string("teapot=0.1")
