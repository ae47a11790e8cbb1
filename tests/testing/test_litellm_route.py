"""The litellm route: dspex-sim/... and dspex-dummy/... as litellm custom providers."""

from __future__ import annotations

import pytest

import dspex
from dspex._runtime import run_sync
from dspex.datasets import load_task
from dspex.errors import ConfigurationError, LMRateLimitError, ScriptExhaustedError
from dspex.testing import DummyLM, Faults, SimulatedLM, register_litellm_providers

from .prompts import chat_prompt, parse_answer

QUESTIONS = [ex.question for ex in load_task("arithmetic").examples[:5]]


@pytest.fixture(scope="module")
def litellm():  # type: ignore[no-untyped-def]
    register_litellm_providers()
    register_litellm_providers()  # idempotent
    import litellm

    return litellm


def test_litellm_acompletion_reaches_the_simulator(litellm) -> None:  # type: ignore[no-untyped-def]
    messages = chat_prompt(QUESTIONS[0], reasoning=True)
    # On dspex's long-lived loop: litellm leaves a logging task behind on the loop it uses.
    response = run_sync(litellm.acompletion(model="dspex-sim/arithmetic", messages=messages, n=2))
    texts = [c.message.content for c in response.choices]
    direct = SimulatedLM("arithmetic", cache=False).forward(messages).outputs[0]
    assert texts == [direct, direct]
    assert response.usage.prompt_tokens > 0
    sync = litellm.completion(model="dspex-sim/arithmetic", messages=messages)
    assert sync.choices[0].message.content == direct


def test_simulated_lm_routed_through_litellm(litellm) -> None:  # type: ignore[no-untyped-def]
    lm = SimulatedLM("arithmetic", route="litellm", cache=False)
    direct = SimulatedLM("arithmetic", cache=False)
    assert lm.model.startswith("dspex-sim/arithmetic-i")
    for q in QUESTIONS:
        assert lm.forward(chat_prompt(q)).outputs == direct.forward(chat_prompt(q)).outputs
    assert lm.request_count == len(QUESTIONS)
    assert lm.copy(temperature=0.0).forward(chat_prompt(QUESTIONS[0])).outputs  # copies resolve


def test_plain_lm_with_a_sim_model_name(litellm) -> None:  # type: ignore[no-untyped-def]
    lm = dspex.LM("dspex-sim/arithmetic", cache=False)
    assert parse_answer(lm.forward(chat_prompt(QUESTIONS[0])).outputs[0]) is not None
    with pytest.raises(ConfigurationError, match="unknown simulated model"):
        dspex.LM("dspex-sim/no-such-thing", cache=False, num_retries=0)("hi")


def test_faults_through_litellm(litellm) -> None:  # type: ignore[no-untyped-def]
    lm = SimulatedLM(
        faults=Faults(rate_429=1.0, retry_after=0.5), route="litellm", num_retries=0, cache=False
    )
    with pytest.raises(LMRateLimitError) as info:
        lm.forward(chat_prompt(QUESTIONS[0]))
    assert info.value.retry_after == 0.5


def test_dummy_lm_through_litellm(litellm) -> None:  # type: ignore[no-untyped-def]
    lm = DummyLM([{"answer": "4"}], route="litellm")
    assert lm.model.startswith("dspex-dummy/")
    assert "4" in lm("2+2?")[0]
    with pytest.raises(ScriptExhaustedError):
        lm("3+3?")


def test_rollout_id_in_metadata_varies_samples(litellm) -> None:  # type: ignore[no-untyped-def]
    def answers(q: str) -> set[str]:
        return {
            litellm.completion(
                model="dspex-sim/arithmetic",
                messages=chat_prompt(q),
                temperature=1.0,
                metadata={"rollout_id": rollout},
            )
            .choices[0]
            .message.content
            for rollout in range(4)
        }

    assert any(len(answers(q)) > 1 for q in QUESTIONS)
