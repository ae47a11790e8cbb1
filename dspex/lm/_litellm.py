"""The litellm transport: every provider that is not OpenAI-compatible goes through litellm.

litellm is imported on first use, never at ``import dspex`` (it takes seconds), in a worker
thread so the event loop keeps serving other calls meanwhile. Its own retries are switched
off (``num_retries=0``): the LM's retry loop is the only one, so ``num_retries`` means the
same thing on every path. Its exceptions become dspex's typed errors with redacted text.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from dspex._redact import redact_text, register_secret
from dspex.errors import (
    ConfigurationError,
    ContextWindowExceededError,
    DspexError,
    LMError,
    LMServerError,
    LMTimeoutError,
    lm_error_from_status,
)
from dspex.lm._openai import parse_retry_after
from dspex.lm._stream import StreamAssembler
from dspex.lm._types import LMRequest, LMToolCall, RawCompletion, tool_calls_of

__all__ = ["LiteLLMTransport", "load_litellm"]

# Packages register litellm custom providers (``<provider>/model`` names litellm does not know)
# under this entry-point group: the name is the provider, the value a function that registers
# it with litellm (dspex's own test doubles, ``dspex-sim`` and ``dspex-dummy``, do this).
PROVIDER_ENTRY_POINTS = "dspex.litellm_providers"

_import_lock = threading.Lock()
_litellm: Any = None
_providers_checked: set[str] = set()


def load_litellm() -> Any:
    """Import litellm once, offline and quiet."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _import_lock:
        if _litellm is None:
            # Use the cost map bundled with the package instead of fetching it over the network.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_TELEMETRY", "False")
            import litellm

            litellm.telemetry = False
            litellm.suppress_debug_info = True
            litellm.set_verbose = False  # type: ignore[attr-defined]
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                logging.getLogger(name).setLevel(logging.WARNING)
            _litellm = litellm
    return _litellm


def register_plugin_provider(model: str) -> None:
    """Register ``model``'s provider with litellm if an installed package offers it under
    the ``dspex.litellm_providers`` entry-point group (once per provider and process)."""
    provider = model.partition("/")[0]
    if provider in _providers_checked:
        return
    with _import_lock:
        if provider in _providers_checked:
            return
        from importlib.metadata import entry_points

        for entry in entry_points(group=PROVIDER_ENTRY_POINTS, name=provider):
            try:
                entry.load()()
            except Exception as e:
                raise ConfigurationError(
                    f"The litellm provider {provider!r} offered by {entry.value!r} failed to "
                    f"register ({type(e).__name__}: {redact_text(str(e))}); reinstall the "
                    "package that provides it."
                ) from None
        _providers_checked.add(provider)


def _dspex_error_in_chain(exc: BaseException) -> DspexError | None:
    # A dspex error raised inside a custom provider (e.g. a scripted LM running out of
    # answers) is wrapped by litellm; the original is the one that says what happened.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DspexError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def map_litellm_error(exc: Exception, model: str) -> DspexError:
    """Translate a litellm (or provider SDK) exception into a typed dspex error."""
    inner = _dspex_error_in_chain(exc)
    if inner is not None:
        return inner
    litellm = load_litellm()
    message = redact_text(str(exc))
    if isinstance(exc, litellm.ContextWindowExceededError):
        return ContextWindowExceededError(
            f"{model}: the prompt exceeds the model's context window. Use fewer or shorter "
            f"demos, or a model with a longer context. Provider said: {message}",
            status=400,
            model=model,
        )
    if isinstance(exc, litellm.Timeout | TimeoutError):
        return LMTimeoutError(f"{model}: no answer in time. {message}", model=model)
    if isinstance(exc, litellm.APIConnectionError):
        return LMServerError(f"{model}: connection failed. {message}", model=model)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return lm_error_from_status(
            status, message, model=model, retry_after=parse_retry_after(_headers_of(exc))
        )
    return LMError(f"{model}: litellm failed with {type(exc).__name__}: {message}", model=model)


def _call_args(request: LMRequest, timeout: float) -> dict[str, Any]:
    """What every ``litellm.acompletion`` call sends besides the request's params: dspex
    retries, so litellm's own retries are off; the messages are copies, since litellm may
    rewrite them in place for some providers."""
    return {
        "model": request.model,
        "messages": [dict(m) for m in request.messages],
        "timeout": timeout,
        "num_retries": 0,
        "max_retries": 0,
    }


def _parse(response: Any) -> RawCompletion:
    texts: list[str] = []
    finish: list[str | None] = []
    calls: list[tuple[LMToolCall, ...]] = []
    for choice in response.choices:
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        texts.append(content if isinstance(content, str) else "")
        finish.append(getattr(choice, "finish_reason", None))
        calls.append(tool_calls_of(message))
    usage = getattr(response, "usage", None)
    return RawCompletion(
        texts,
        int(getattr(usage, "prompt_tokens", 0) or 0),
        int(getattr(usage, "completion_tokens", 0) or 0),
        finish,
        getattr(response, "model", None),
        calls if any(calls) else (),
    )


class LiteLLMTransport:
    """Sends requests through ``litellm.acompletion`` (Anthropic, Gemini, Bedrock, ...).

    Args:
        api_key: passed to litellm; when omitted, litellm reads the provider's env variable.
        api_base: passed to litellm, for self-hosted or proxied endpoints.
        **credentials: other provider credentials litellm accepts (``aws_secret_access_key``,
            ...); like ``api_key`` they are registered as secrets and sent only to litellm.

    Example:
        >>> from dspex.lm import LM, LiteLLMTransport
        >>> lm = LM("anthropic/claude-3-5-haiku-latest", transport=LiteLLMTransport())
    """

    name = "litellm"
    # litellm keeps process-wide async state (its HTTP clients, its logging worker) that not
    # every supported version scopes per loop: an LM runs it on dspex's loop only.
    loop_safe = False

    def __init__(
        self, *, api_key: str | None = None, api_base: str | None = None, **credentials: Any
    ) -> None:
        register_secret(api_key)
        for value in credentials.values():
            register_secret(value if isinstance(value, str) else None)
        self._api_key = api_key
        self._api_base = api_base
        self._credentials = credentials

    def __repr__(self) -> str:
        base = redact_text(self._api_base) if self._api_base else None
        return f"LiteLLMTransport(api_base={base!r})"

    async def _prepare(self, request: LMRequest) -> tuple[Any, dict[str, Any]]:
        """litellm (imported on first use) and the call's parameters with the credentials."""
        litellm = _litellm
        if litellm is None:
            litellm = await asyncio.to_thread(load_litellm)
        if request.model.partition("/")[0] not in _providers_checked:
            register_plugin_provider(request.model)
        params: dict[str, Any] = {**request.kwargs, **self._credentials}
        if self._api_key is not None:
            params["api_key"] = self._api_key
        if self._api_base is not None:
            params["api_base"] = self._api_base
        return litellm, params

    async def complete(self, request: LMRequest, *, timeout: float) -> RawCompletion:
        """Call ``litellm.acompletion``; raise a typed ``LMError`` on any failure."""
        litellm, params = await self._prepare(request)
        try:
            response = await litellm.acompletion(**_call_args(request, timeout), **params)
        except Exception as exc:
            raise map_litellm_error(exc, request.model) from None
        return _parse(response)

    async def aclose(self) -> None:
        """Nothing to release: litellm owns its HTTP clients."""

    async def stream(
        self, request: LMRequest, *, timeout: float, on_text: Callable[[str], None]
    ) -> RawCompletion:
        """``litellm.acompletion(stream=True)``: each text delta of the first choice goes to
        ``on_text``; the whole completion, with the usage of the last chunk, is returned.
        Stopping early (cancellation) closes litellm's stream and its connection."""
        litellm, params = await self._prepare(request)
        options = {**(params.pop("stream_options", None) or {}), "include_usage": True}
        assembler = StreamAssembler()
        response: Any = None
        try:
            response = await litellm.acompletion(
                **_call_args(request, timeout), stream=True, stream_options=options, **params
            )
            async for chunk in response:
                text = assembler.add(chunk)
                if text:
                    on_text(text)
        except Exception as exc:
            raise map_litellm_error(exc, request.model) from None
        finally:
            close = getattr(response, "aclose", None)
            if close is not None and not assembler.finished:
                await close()
        return assembler.result()
