"""What a span says about a dspex call: names, attributes and (redacted) content.

Shared by the OpenTelemetry and the MLflow exporters so that both describe a call the same
way. LM calls follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``); what has
no convention is a ``dspex.*`` attribute. Every text that leaves here went through
:func:`dspex._redact.redact` (credential keys dropped, registered secrets and key-shaped
tokens replaced), after being encoded, so a secret hidden in an object's ``str`` is caught too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import orjson

from dspex._jsonable import json_default_or_str
from dspex._redact import redact, redact_text

if TYPE_CHECKING:
    from dspex.callbacks import Span
    from dspex.lm import LMRequest, LMResponse

__all__ = [
    "content_json",
    "input_messages",
    "label_attributes",
    "lm_request_attributes",
    "lm_response_attributes",
    "module_attributes",
    "output_messages",
    "provider_of",
    "redacted_value",
    "request_model",
    "usage_attributes",
]

AttributeValue = str | bool | int | float | Sequence[str]

# litellm's provider prefixes whose OpenTelemetry name (gen_ai.provider.name) differs.
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}
# Request parameters with a GenAI attribute of their own.
_REQUEST_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}
_MAX_TEXT = 64_000  # one attribute's text, in characters: backends cap spans in size


def provider_of(model: str) -> str:
    """The ``gen_ai.provider.name`` of a ``provider/name`` model string."""
    prefix = model.split("/", 1)[0] if "/" in model else "openai"
    return _PROVIDERS.get(prefix, prefix)


def request_model(model: str) -> str:
    """The model name without its provider prefix (``gen_ai.request.model``)."""
    return model.split("/", 1)[1] if "/" in model else model


def redacted_value(value: Any) -> Any:
    """``value`` as JSON-native data, redacted (what MLflow stores as span inputs/outputs)."""
    return orjson.loads(content_json(value))


def content_json(value: Any) -> str:
    """``value`` as redacted JSON text, cut to a size tracing backends accept."""
    data = orjson.dumps(
        redact(value), default=json_default_or_str, option=orjson.OPT_NON_STR_KEYS
    ).decode()
    text = redact_text(data)
    if len(text) <= _MAX_TEXT:
        return text
    return orjson.dumps({"truncated": True, "prefix": text[:_MAX_TEXT]}).decode()


def label_attributes(span: Span) -> dict[str, AttributeValue]:
    """The labels in effect (``dspex.context(labels=...)``) as ``dspex.label.<name>``."""
    return {f"dspex.label.{k}": redact_text(str(v)) for k, v in span.labels.items()}


def module_attributes(span: Span, module: Any) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "dspex.span.kind": "module",
        "dspex.module.path": span.name or "self",
        "dspex.module.class": span.module_class or type(module).__name__,
    }
    sig = getattr(module, "signature", None)
    if sig is not None and hasattr(sig, "signature"):
        attrs["dspex.signature"] = str(sig.signature)
    return attrs


def lm_request_attributes(lm: Any, request: LMRequest) -> dict[str, AttributeValue]:
    """The GenAI request attributes of an LM call (parameters only; never credentials)."""
    attrs: dict[str, AttributeValue] = {
        "dspex.span.kind": "lm",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider_of(request.model),
        "gen_ai.system": provider_of(request.model),  # the name before semconv 1.37
        "gen_ai.request.model": request_model(request.model),
        "dspex.lm.model": request.model,
    }
    for key, name in _REQUEST_PARAMS.items():
        value = request.kwargs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[name] = value
    if request.max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = request.max_tokens
    stop = request.kwargs.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list | tuple) and all(isinstance(s, str) for s in stop):
        attrs["gen_ai.request.stop_sequences"] = [redact_text(s) for s in stop]
    if request.rollout_id is not None:
        attrs["dspex.lm.rollout_id"] = str(request.rollout_id)
    attrs.update(_server(getattr(lm, "api_base", None)))
    return attrs


def _server(api_base: Any) -> dict[str, AttributeValue]:
    """``server.address``/``server.port`` of a custom endpoint: the host only, so that no
    ``user:password@`` or query-string token can come along."""
    if not isinstance(api_base, str) or not api_base:
        return {}
    try:
        parts = urlparse(api_base)
        host, port = parts.hostname, parts.port
    except ValueError:
        return {}
    attrs: dict[str, AttributeValue] = {}
    if host:
        attrs["server.address"] = host
    if port:
        attrs["server.port"] = port
    return attrs


def usage_attributes(usage: Any) -> dict[str, AttributeValue]:
    """Tokens (cache hits included: they are the call's tokens, just not paid) and cost."""
    if usage is None:
        return {}
    attrs: dict[str, AttributeValue] = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens + usage.cached_prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens + usage.cached_completion_tokens,
    }
    if usage.cost is not None:
        attrs["dspex.usage.cost"] = float(usage.cost)
    return attrs


def lm_response_attributes(response: LMResponse) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "gen_ai.response.model": request_model(response.model),
        "dspex.lm.cache_hit": response.cache_hit,
        **usage_attributes(response.usage),
    }
    if response.finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = [str(r) for r in response.finish_reasons]
    return attrs


def _parts(content: Any) -> list[dict[str, Any]]:
    """A message's content as GenAI ``parts``: text kept, other media named, not copied."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list):
        for item in content:
            if isinstance(item, Mapping) and item.get("type") == "text":
                parts.append({"type": "text", "content": item.get("text", "")})
            elif isinstance(item, Mapping):
                parts.append({"type": str(item.get("type", "unknown"))})
    return parts


def input_messages(request: LMRequest) -> str:
    """``gen_ai.input.messages``: the chat messages sent, as redacted JSON text."""
    messages = [
        {"role": str(m.get("role", "user")), "parts": _parts(m.get("content"))}
        for m in request.messages
    ]
    return content_json(messages)


def output_messages(response: LMResponse) -> str:
    """``gen_ai.output.messages``: one assistant message per choice, as redacted JSON text."""
    reasons = list(response.finish_reasons)
    messages = []
    for i, text in enumerate(response.outputs):
        message: dict[str, Any] = {"role": "assistant", "parts": _parts(text)}
        if i < len(response.tool_calls):
            for call in response.tool_calls[i]:
                message["parts"].append(
                    {"type": "tool_call", "id": call.id, "name": call.name}
                    | {"arguments": call.arguments}
                )
        message["finish_reason"] = str(reasons[i]) if i < len(reasons) else "stop"
        messages.append(message)
    return content_json(messages)
