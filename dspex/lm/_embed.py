"""Embedding requests: one batch of texts to vectors, over the OpenAI-compatible HTTP path
(``POST {api_base}/embeddings`` on the pooled HTTP connections the LM client uses) or litellm
(``litellm.aembedding``), with the LM client's typed errors and retry policy.

``dspex.Embedder`` (``dspex.retrievers``) batches, caches and traces on top of this.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspex._jsonable import canonical_json, dumps, loads
from dspex._redact import is_secret_key, redact_text, register_secret
from dspex.errors import LMError, LMServerError, LMTimeoutError, UserError
from dspex.lm._openai import OPENAI_API_BASE, TRANSPORT_ERRORS, http_error, post

__all__ = ["EmbeddingClient", "RawEmbeddings", "embedding_key", "is_credential_param"]

# Request params that are transport settings, not part of what is embedded.
_NOT_IN_KEY = frozenset({"api_key", "api_base", "base_url", "extra_headers", "headers", "timeout"})
_MAX_RETRY_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class RawEmbeddings:
    """One batch's answer: a vector per input, in input order, and the tokens billed."""

    vectors: list[list[float]]
    prompt_tokens: int
    model: str | None = None


def embedding_key(model: str, text: str, kwargs: Mapping[str, Any]) -> str:
    """The cache key of one text's embedding: sha256 over model, text and request params
    (``dimensions``, ...), never credentials or endpoints."""
    params = {
        k: v for k, v in kwargs.items() if k not in _NOT_IN_KEY and not is_credential_param(k)
    }
    payload = {"embedding": model, "input": text, "kwargs": params}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def is_credential_param(key: str) -> bool:
    """Whether a request param names a credential, not something that shapes the vectors."""
    # A credential param (litellm's ``aws_secret_access_key``, ...) is not what is embedded:
    # a new key must not miss the cache. ``*_tokens`` params only look like credentials.
    return is_secret_key(key) and not key.endswith("_tokens")


def parse_embeddings(payload: bytes, model: str, n: int) -> RawEmbeddings:
    """Parse an OpenAI ``list`` of ``embedding`` objects; anything else is a server error."""
    try:
        data = loads(payload)
        items = sorted(data["data"], key=lambda d: int(d.get("index", 0)))
        vectors = [[float(x) for x in item["embedding"]] for item in items]
        usage = data.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    except (ValueError, TypeError, KeyError, AttributeError):
        shown = redact_text(payload[:300].decode("utf-8", "replace"))
        raise LMServerError(
            f"{model}: the provider sent a response that is not an embedding list: {shown}",
            status=200,
            model=model,
        ) from None
    if len(vectors) != n:
        raise LMServerError(
            f"{model}: asked for {n} embeddings, the provider sent {len(vectors)}.",
            status=200,
            model=model,
        )
    return RawEmbeddings(vectors, tokens, data.get("model"))


class EmbeddingClient:
    """Sends embedding requests for one model, retrying retryable failures with backoff.

    Args:
        model: ``provider/name``; ``openai/...`` goes over dspex's own HTTP client when
            ``transport`` is ``"auto"``, every other provider through litellm.
        api_key: sent as ``Authorization: Bearer`` (OpenAI path) or to litellm; never logged.
        api_base: the server's base URL (e.g. ``http://127.0.0.1:8000/v1``).
        transport: ``"auto"``, ``"openai"`` or ``"litellm"``.
        num_retries: retries of a retryable failure (429, 5xx, timeout).
        timeout: seconds per request.

    Example:
        >>> EmbeddingClient("openai/text-embedding-3-small").transport
        'openai'
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        transport: str = "auto",
        num_retries: int = 3,
        timeout: float = 60.0,
    ) -> None:
        if transport not in ("auto", "openai", "litellm"):
            raise UserError(f"transport={transport!r}: use 'auto', 'openai' or 'litellm'.")
        self.model = model
        auto = "openai" if model.startswith("openai/") else "litellm"
        self.transport = auto if transport == "auto" else transport
        self.api_base = api_base
        if api_key is None and self.transport == "openai" and api_base is None:
            api_key = os.environ.get("OPENAI_API_KEY")
        register_secret(api_key)
        self._api_key = api_key
        self.num_retries = num_retries
        self.timeout = timeout

    def __repr__(self) -> str:
        base = f", api_base={redact_text(self.api_base)!r}" if self.api_base else ""
        return f"EmbeddingClient({self.model!r}, transport={self.transport!r}{base})"

    async def embed(self, texts: Sequence[str], kwargs: Mapping[str, Any]) -> RawEmbeddings:
        """Embed one batch, retrying what may succeed later."""
        attempt = 0
        while True:
            try:
                if self.transport == "openai":
                    return await self._openai(texts, kwargs)
                return await self._litellm(texts, kwargs)
            except LMError as exc:
                if not exc.retryable or attempt >= self.num_retries:
                    raise
                delay = (
                    min(exc.retry_after, _MAX_RETRY_AFTER_S)
                    if exc.retry_after is not None
                    else min(30.0, 0.5 * 2.0**attempt) * (0.5 + random.random() / 2)
                )
            attempt += 1
            await asyncio.sleep(delay)

    async def _openai(self, texts: Sequence[str], kwargs: Mapping[str, Any]) -> RawEmbeddings:
        url = (self.api_base or OPENAI_API_BASE).rstrip("/") + "/embeddings"
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        params = dict(kwargs)
        headers.update(params.pop("extra_headers", None) or {})
        model = self.model
        body = dumps({"model": model.removeprefix("openai/"), "input": list(texts), **params})
        try:
            resp = await post(url, headers, body, self.timeout)
        except TimeoutError:
            raise LMTimeoutError(
                f"{model}: no embeddings within {self.timeout:g}s.", model=model
            ) from None
        except TRANSPORT_ERRORS as exc:
            raise LMServerError(
                f"{model}: connection failed: {redact_text(str(exc))}", model=model
            ) from None
        payload = resp.body
        if resp.status >= 300:
            raise http_error(resp.status, payload, resp.headers, model)
        return parse_embeddings(payload, model, len(texts))

    async def _litellm(self, texts: Sequence[str], kwargs: Mapping[str, Any]) -> RawEmbeddings:
        from dspex.lm._litellm import load_litellm, map_litellm_error

        litellm = load_litellm()
        extra: dict[str, Any] = {}
        if self._api_key is not None:
            extra["api_key"] = self._api_key
        if self.api_base is not None:
            extra["api_base"] = self.api_base
        try:
            response = await litellm.aembedding(
                model=self.model, input=list(texts), timeout=self.timeout, **extra, **kwargs
            )
        except Exception as exc:
            raise map_litellm_error(exc, self.model) from None
        items = sorted(response.data, key=lambda d: int(_get(d, "index", 0)))
        vectors = [[float(x) for x in _get(d, "embedding", [])] for d in items]
        if len(vectors) != len(texts):
            raise LMServerError(
                f"{self.model}: asked for {len(texts)} embeddings, got {len(vectors)}.",
                model=self.model,
            )
        usage = getattr(response, "usage", None)
        tokens = int(_get(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
        return RawEmbeddings(vectors, tokens, getattr(response, "model", None))


def _get(obj: Any, key: str, default: Any) -> Any:
    # litellm gives dicts for data items and objects for usage, depending on the provider.
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)
