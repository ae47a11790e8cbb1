"""litellm custom providers for the test doubles: ``dspex-sim/...`` and ``dspex-dummy/...``.

With them, ``litellm.acompletion(model="dspex-sim/arithmetic", ...)`` reaches a simulator
through litellm's real request path. Model names resolve through a registry:

* ``dspex-sim/<task>`` and ``dspex-sim/<task>-s<seed>`` get a process-wide default simulator
  of a bundled task (no latency, no faults);
* names registered by ``SimulatedLM(..., route="litellm")`` or ``DummyLM(...,
  route="litellm")`` (``dspex-sim/arithmetic-i1f3a``) reach that very instance. The registry
  holds them for the life of the process, so copies of the LM (``lm.copy(...)``) keep working;
  another process cannot reach them (use the HTTP server in ``dspex.testing.server`` there).

litellm is imported only by :func:`register_litellm_providers`, never at import time.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from dspex._serving import split_text
from dspex.errors import ConfigurationError, UserError
from dspex.lm._types import LMRequest
from dspex.testing._core import Reply, Responder

__all__ = ["DUMMY_PROVIDER", "SIM_PROVIDER", "register_litellm_providers", "register_responder"]

SIM_PROVIDER = "dspex-sim"
DUMMY_PROVIDER = "dspex-dummy"
# litellm passes these in optional_params, but they are transport settings, not sampling ones.
_NOT_SAMPLING = frozenset({"max_retries", "num_retries", "stream", "api_key", "api_base"})
_DEFAULT_NAME = re.compile(r"^(?P<task>[a-z][a-z0-9_]*?)(?:-s(?P<seed>\d+))?$")

_lock = threading.Lock()
_ids = itertools.count(1)
_registry: dict[str, Responder] = {}
_defaults: dict[str, Responder] = {}
_registered = False


def register_responder(provider: str, responder: Responder, name: str) -> str:
    """Make ``responder`` reachable as ``<provider>/<name>-i<id>``; returns the model name."""
    with _lock:
        model = f"{provider}/{name}-i{os.getpid():x}{next(_ids):x}"
        _registry[model] = responder
    return model


def resolve(provider: str, name: str) -> Responder:
    """The responder behind ``<provider>/<name>``."""
    model = f"{provider}/{name}"
    found = _registry.get(model)
    if found is not None:
        return found
    if provider == SIM_PROVIDER:
        with _lock:
            if model not in _defaults:
                _defaults[model] = _default_simulator(name)
            return _defaults[model]
    raise ConfigurationError(
        f"No DummyLM is registered as {model!r} in this process. Create the LM with "
        "dspex.testing.DummyLM(answers, route='litellm') and use its .model."
    )


def _default_simulator(name: str) -> Responder:
    from dspex.datasets import load_task
    from dspex.testing._sim import Simulator

    match = _DEFAULT_NAME.match(name)
    if match is None:
        raise ConfigurationError(
            f"dspex-sim/{name}: unknown simulated model. A SimulatedLM(route='litellm') is "
            "reachable only in the process that made it; elsewhere use dspex-sim/<task> or "
            "dspex-sim/<task>-s<seed> (a bundled task, no faults), or the HTTP server "
            "(python -m dspex.testing.server)."
        )
    try:
        task = load_task(match["task"])
    except UserError as e:
        raise ConfigurationError(f"dspex-sim/{name}: {e}") from None
    return Simulator(task, seed=int(match["seed"] or 0))


def _timeout_s(timeout: Any) -> float:
    if isinstance(timeout, int | float):
        return float(timeout)
    read = getattr(timeout, "read", None)  # httpx.Timeout
    return float(read) if isinstance(read, int | float) else 600.0


def _request(provider: str, kw: dict[str, Any]) -> LMRequest:
    params = kw.get("optional_params") or {}
    kwargs = {k: v for k, v in params.items() if k not in _NOT_SAMPLING}
    # litellm sends nothing like a rollout id to providers; a caller may pass one in
    # ``metadata={"rollout_id": ...}`` so that sampled answers differ per rollout.
    metadata = (kw.get("litellm_params") or {}).get("metadata") or {}
    rollout = metadata.get("rollout_id") if isinstance(metadata, dict) else None
    messages = tuple(kw["messages"])
    return LMRequest(f"{provider}/{kw['model']}", messages, kwargs, rollout_id=rollout)


def _fault_error(litellm: Any, reply: Reply, provider: str, model: str) -> Exception:
    import httpx

    full = f"{provider}/{model}"
    request = httpx.Request("POST", f"http://{provider}.invalid/v1/chat/completions")
    if reply.fault == "rate_limit":
        headers = {"retry-after": f"{reply.retry_after or 0:g}"}
        response = httpx.Response(429, headers=headers, request=request)
        limited: Exception = litellm.RateLimitError(
            "simulated rate limit", llm_provider=provider, model=full, response=response
        )
        return limited
    response = httpx.Response(500, request=request)
    failed: Exception = litellm.InternalServerError(
        "simulated server error", llm_provider=provider, model=full, response=response
    )
    return failed


def _fill(litellm: Any, model_response: Any, reply: Reply, model: str) -> Any:
    calls = reply.tool_calls
    model_response.choices = [
        litellm.Choices(
            index=i,
            message=litellm.Message(
                content=text or None, tool_calls=[c.to_openai() for c in calls[i]]
            )
            if i < len(calls) and calls[i]
            else litellm.Message(content=text),
            finish_reason="tool_calls" if i < len(calls) and calls[i] else reason,
        )
        for i, (text, reason) in enumerate(zip(reply.texts, reply.finish_reasons))
    ]
    model_response.model = model
    model_response.usage = litellm.Usage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        total_tokens=reply.prompt_tokens + reply.completion_tokens,
    )
    return model_response


def _generic_chunk(
    text: str, *, finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """litellm's ``GenericStreamingChunk`` for a custom provider's stream."""
    return {
        "text": text,
        "is_finished": finish is not None,
        "finish_reason": finish,
        "usage": usage,
        "index": 0,
        "tool_use": None,
    }


def _make_handler(litellm: Any, provider: str) -> Any:
    """A ``litellm.CustomLLM`` for ``provider``; defined here because litellm loads lazily."""

    class _Handler(litellm.CustomLLM):  # type: ignore[misc]
        async def _areply(self, kw: dict[str, Any]) -> Reply:
            model, timeout = kw["model"], _timeout_s(kw.get("timeout"))
            responder = resolve(provider, model)
            reply = responder.reply(_request(provider, kw))
            if reply.fault == "hang" or responder.latency > timeout:
                await asyncio.sleep(timeout)
                raise litellm.Timeout("simulated hang", model=model, llm_provider=provider)
            if reply.fault is not None:
                raise _fault_error(litellm, reply, provider, model)
            if responder.latency > 0:
                await asyncio.sleep(responder.latency)
            return reply

        async def acompletion(self, *args: Any, **kw: Any) -> Any:
            reply = await self._areply(kw)
            return _fill(litellm, kw["model_response"], reply, kw["model"])

        async def astreaming(self, *args: Any, **kw: Any) -> AsyncIterator[dict[str, Any]]:
            # ``stream=True``: the first answer word by word, as litellm's generic chunks.
            reply = await self._areply(kw)
            for piece in split_text(reply.texts[0] if reply.texts else ""):
                yield _generic_chunk(piece)
            usage = {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            }
            reasons = list(reply.finish_reasons)
            yield _generic_chunk(
                "", finish=(reasons[0] if reasons else None) or "stop", usage=usage
            )

        def completion(self, *args: Any, **kw: Any) -> Any:
            model, timeout = kw["model"], _timeout_s(kw.get("timeout"))
            responder = resolve(provider, model)
            reply = responder.reply(_request(provider, kw))
            if reply.fault == "hang" or responder.latency > timeout:
                time.sleep(timeout)
                raise litellm.Timeout("simulated hang", model=model, llm_provider=provider)
            if reply.fault is not None:
                raise _fault_error(litellm, reply, provider, model)
            if responder.latency > 0:
                time.sleep(responder.latency)
            return _fill(litellm, kw["model_response"], reply, model)

    return _Handler()


def register_litellm_providers() -> None:
    """Register ``dspex-sim`` and ``dspex-dummy`` as litellm custom providers (idempotent).

    ``dspex.LM`` calls this itself before its first litellm call for such a model; call it
    yourself to use litellm directly.

    Example:
        >>> import litellm  # doctest: +SKIP
        >>> from dspex.testing import register_litellm_providers
        >>> register_litellm_providers()
        >>> r = litellm.completion(model="dspex-sim/arithmetic",
        ...                        messages=[{"role": "user", "content": "1+1?"}])  # doctest: +SKIP
    """
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        present = {item.get("provider") for item in litellm.custom_provider_map}
        for provider in (SIM_PROVIDER, DUMMY_PROVIDER):
            if provider not in present:
                handler = _make_handler(litellm, provider)
                litellm.custom_provider_map.append(
                    {"provider": provider, "custom_handler": handler}
                )
        _registered = True
