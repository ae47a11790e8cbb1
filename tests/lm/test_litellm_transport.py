"""The litellm path, reaching the loopback server through litellm's OpenAI provider."""

from __future__ import annotations

import pytest

import dspex.testing
from dspex.errors import (
    ContextWindowExceededError,
    LMAuthError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
)
from dspex.lm import LM, LiteLLMTransport
from tests.lm._server import Reply, ScriptedServer, user

KEY = "sk-litellm-SENTINEL-98765"


def _lm(server: ScriptedServer, **kw: object) -> LM:
    return LM(
        "openai/sim",
        api_base=server.base,
        api_key=KEY,
        transport="litellm",
        retry_backoff=(0.0, 0.0),
        cache=False,
        **kw,  # type: ignore[arg-type]
    )


async def test_litellm_success_parses_choices_and_usage(server: ScriptedServer) -> None:
    lm = _lm(server)
    assert isinstance(lm.transport, LiteLLMTransport)
    resp = await lm.aforward(user("hi"), n=2, temperature=0.0)
    assert resp.outputs == ["echo 0: hi", "echo 1: hi"]
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (10, 5)
    assert server.seen[0].body["model"] == "sim"
    assert server.seen[0].headers["Authorization"] == f"Bearer {KEY}"


async def test_litellm_persistent_500_is_retried_by_us_only(server: ScriptedServer) -> None:
    server.push(*[Reply(500, {"error": {"message": "boom"}})] * 10)
    with pytest.raises(LMServerError):
        await _lm(server, num_retries=2).aforward(user("hi"))
    assert server.count == 3  # litellm's and the OpenAI SDK's own retries are off


async def test_litellm_429_then_success(server: ScriptedServer) -> None:
    server.push(Reply(429, {"error": {"message": "slow"}}, {"Retry-After": "0"}))
    assert await _lm(server).acall("hi") == ["echo 0: hi"]
    assert server.count == 2


async def test_litellm_rate_limit_exhausted(server: ScriptedServer) -> None:
    server.push(*[Reply(429, {"error": {"message": "slow"}}, {"Retry-After": "0"})] * 3)
    with pytest.raises(LMRateLimitError):
        await _lm(server, num_retries=1).aforward(user("hi"))
    assert server.count == 2


async def test_litellm_auth_error_is_redacted_and_not_retried(server: ScriptedServer) -> None:
    server.push(Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    with pytest.raises(LMAuthError) as info:
        await _lm(server).aforward(user("hi"))
    assert KEY not in str(info.value)
    assert server.count == 1


async def test_litellm_context_window(server: ScriptedServer) -> None:
    message = "This model's maximum context length is 8192 tokens."
    server.push(Reply(400, {"error": {"message": message, "code": "context_length_exceeded"}}))
    with pytest.raises(ContextWindowExceededError):
        await _lm(server).aforward(user("long"))


async def test_dspex_sim_models_route_through_litellm_providers() -> None:
    if not hasattr(dspex.testing, "register_litellm_providers"):
        pytest.skip("dspex.testing.register_litellm_providers is not available yet")
    lm = LM("dspex-sim/arithmetic", cache=False)
    assert isinstance(lm.transport, LiteLLMTransport)
    resp = await lm.aforward(user("What is 2 + 3?"))
    assert len(resp.outputs) == 1 and isinstance(resp.outputs[0], str)


async def test_litellm_hang_times_out(server: ScriptedServer) -> None:
    server.push(Reply(hang=True))
    with pytest.raises(LMTimeoutError):
        await _lm(server, timeout=0.3, num_retries=0).aforward(user("hi"))
    assert server.count == 1
