"""The lean OpenAI-compatible path against a loopback server: retries, errors, parsing."""

from __future__ import annotations

from typing import Any

import pytest

from dspex.errors import (
    ContextWindowExceededError,
    LMAuthError,
    LMBadRequestError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
)
from dspex.lm import LM, OpenAITransport
from dspex.lm._openai import parse_retry_after
from tests.lm._server import Reply, ScriptedServer, user

FAST: dict[str, Any] = {"retry_backoff": (0.0, 0.0), "cache": False}


def test_auto_routes_openai_models_to_the_lean_transport(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base)
    assert isinstance(lm.transport, OpenAITransport)
    assert not isinstance(LM("anthropic/claude", api_base=server.base).transport, OpenAITransport)


async def test_request_body_strips_prefix_and_keeps_params(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, temperature=0.5, cache=False)
    resp = await lm.aforward(user("hi"), max_tokens=7, rollout_id=3)
    assert resp.outputs == ["echo 0: hi"]
    body = server.seen[0].body
    assert body == {
        "model": "sim",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "max_tokens": 7,
    }
    assert server.seen[0].path == "/v1/chat/completions"
    # No key given and not OpenAI's base: no Authorization header at all.
    assert "Authorization" not in server.seen[0].headers


async def test_api_key_is_sent_as_bearer(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, api_key="sk-local-0000", cache=False)
    await lm.aforward(user("hi"))
    assert server.seen[0].headers["Authorization"] == "Bearer sk-local-0000"


async def test_n_returns_n_outputs_and_usage(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)
    resp = await lm.aforward(user("q"), n=3)
    assert resp.outputs == ["echo 0: q", "echo 1: q", "echo 2: q"]
    assert resp.finish_reasons == ("stop", "stop", "stop")
    assert server.seen[0].body["n"] == 3
    assert (resp.usage.calls, resp.usage.prompt_tokens, resp.usage.completion_tokens) == (1, 10, 5)
    assert resp.usage.cost is None  # no price known for "openai/sim"
    assert not resp.cache_hit


async def test_rate_limits_then_success(server: ScriptedServer) -> None:
    server.push(
        Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
        Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
    )
    lm = LM("openai/sim", api_base=server.base, num_retries=3, cache=False)
    assert await lm.acall("hi") == ["echo 0: hi"]
    assert server.count == 3


async def test_persistent_500_makes_num_retries_plus_one_requests(server: ScriptedServer) -> None:
    server.push(*[Reply(500, {"error": {"message": "boom"}})] * 10)
    lm = LM("openai/sim", api_base=server.base, num_retries=2, **FAST)
    with pytest.raises(LMServerError) as info:
        await lm.aforward(user("hi"))
    assert server.count == 3
    assert info.value.status == 500 and info.value.retryable
    assert "boom" in str(info.value)


async def test_429_exhausted_raises_rate_limit_with_retry_after(server: ScriptedServer) -> None:
    server.push(*[Reply(429, {"error": {"message": "x"}}, {"Retry-After": "0"})] * 3)
    lm = LM("openai/sim", api_base=server.base, num_retries=1, **FAST)
    with pytest.raises(LMRateLimitError) as info:
        await lm.aforward(user("hi"))
    assert info.value.retry_after == 0.0
    assert server.count == 2


async def test_401_is_not_retried(server: ScriptedServer) -> None:
    server.push(Reply(401, {"error": {"message": "bad key", "code": "invalid_api_key"}}))
    lm = LM("openai/sim", api_base=server.base, num_retries=3, **FAST)
    with pytest.raises(LMAuthError):
        await lm.aforward(user("hi"))
    assert server.count == 1


async def test_context_window_400(server: ScriptedServer) -> None:
    message = "This model's maximum context length is 8192 tokens. However, you requested 9000."
    server.push(Reply(400, {"error": {"message": message, "code": "context_length_exceeded"}}))
    lm = LM("openai/sim", api_base=server.base, **FAST)
    with pytest.raises(ContextWindowExceededError):
        await lm.aforward(user("long"))
    assert server.count == 1


async def test_other_400_is_bad_request(server: ScriptedServer) -> None:
    server.push(Reply(400, {"error": {"message": "unknown parameter: foo"}}))
    lm = LM("openai/sim", api_base=server.base, **FAST)
    with pytest.raises(LMBadRequestError) as info:
        await lm.aforward(user("x"), foo=1)
    assert not isinstance(info.value, ContextWindowExceededError)
    assert "unknown parameter" in str(info.value)


async def test_hang_times_out(server: ScriptedServer) -> None:
    server.push(Reply(hang=True), Reply(hang=True))
    lm = LM("openai/sim", api_base=server.base, timeout=0.2, num_retries=1, **FAST)
    with pytest.raises(LMTimeoutError) as info:
        await lm.aforward(user("x"))
    assert info.value.retryable
    assert server.count == 2


async def test_hang_then_answer_recovers(server: ScriptedServer) -> None:
    server.push(Reply(hang=True))
    lm = LM("openai/sim", api_base=server.base, timeout=0.2, num_retries=1, **FAST)
    assert await lm.acall("x") == ["echo 0: x"]


async def test_malformed_200_is_a_retryable_server_error(server: ScriptedServer) -> None:
    server.push(Reply(200, b"<html>not json</html>"), Reply(200, {"no": "choices"}))
    lm = LM("openai/sim", api_base=server.base, num_retries=1, **FAST)
    with pytest.raises(LMServerError, match="not a chat completion"):
        await lm.aforward(user("x"))
    assert server.count == 2


async def test_connection_refused_is_a_server_error() -> None:
    lm = LM("openai/sim", api_base="http://127.0.0.1:9/v1", num_retries=1, **FAST)
    with pytest.raises(LMServerError, match="connection"):
        await lm.aforward(user("x"))


async def test_retry_backoff_is_used_without_retry_after(server: ScriptedServer) -> None:
    server.push(Reply(503, {"error": "down"}))
    lm = LM("openai/sim", api_base=server.base, retry_backoff=(0.05, 0.05), cache=False)
    resp = await lm.aforward(user("x"))
    # Jitter keeps the wait within [base/2, base].
    assert 0.025 <= resp.latency_s < 1.0
    assert server.count == 2


def test_sync_call_from_plain_thread(server: ScriptedServer) -> None:
    lm = LM("openai/sim", api_base=server.base, cache=False)
    assert lm("hello") == ["echo 0: hello"]
    assert lm(messages=user("again"), n=2) == ["echo 0: again", "echo 1: again"]


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # past
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


async def test_concurrency_64_shares_the_pool(server: ScriptedServer) -> None:
    import asyncio

    lm = LM("openai/sim", api_base=server.base, cache=False)
    results = await asyncio.gather(*(lm.acall(f"q{i}") for i in range(64)))
    assert results == [[f"echo 0: q{i}"] for i in range(64)]
