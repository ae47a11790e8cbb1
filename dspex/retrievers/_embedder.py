"""``dspex.Embedder``: texts to vectors, with DSPy's API.

Three kinds of model, one call shape (``embedder(texts) -> np.ndarray``):

- a hosted model name (``"openai/text-embedding-3-small"``, ``"cohere/embed-english-v3.0"``,
  ...): ``openai/...`` goes over dspex's own pooled HTTP client (any OpenAI-compatible
  server with ``api_base``), every other provider through litellm. Batches run
  concurrently, each text's vector is cached in the LM cache (one entry per model, text and
  params; no pickle), and each batch is an ``embed`` event with its usage and cost;
- ``"local/<path or hub id>"``: a sentence-transformers model in this process (the
  ``retrieval-local`` extra), cached the same way;
- any callable ``fn(list[str], **kwargs) -> 2-D array``, e.g. ``SentenceTransformer.encode``
  (not cached: dspex cannot tell two callables' outputs apart).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dspex._redact import register_secret
from dspex._runtime import bounded_gather
from dspex.callbacks import active, observed
from dspex.errors import ConfigurationError, DataError, UserError
from dspex.lm._embed import (
    EmbeddingClient,
    RawEmbeddings,
    embedding_key,
    is_credential_param,
)
from dspex.lm._pricing import cost_of
from dspex.primitives import Usage

if TYPE_CHECKING:
    import numpy as np

    from dspex.lm import Cache

__all__ = ["EmbedResult", "Embedder"]

_LOCAL_PREFIX = "local/"
_CLIENT_KEYS = ("api_key", "api_base", "transport", "num_retries", "timeout")
_HEADER_KEYS = ("extra_headers", "headers")
_LOCAL_MODELS: dict[str, Any] = {}
_LOCAL_LOCK = threading.Lock()
LOCAL_INSTALL_HINT = "pip install 'dspex[retrieval-local]' (sentence-transformers)"


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """What one embedding batch cost: the ``result`` of an ``on_embed_end`` event.

    Attributes:
        model: the model name (a callable's ``__name__``).
        n: texts in the batch.
        usage: tokens and cost (cache hits count as ``cache_hits`` and cost nothing).
        cache_hit: every vector came from the cache.
    """

    model: str
    n: int
    usage: Usage
    cache_hit: bool


class Embedder:
    """Compute embeddings, as ``dspy.Embedder`` does.

    Args:
        model: a hosted model name, ``"local/<sentence-transformers path or hub id>"``, or a
            callable taking a list of strings and returning one vector per string.
        batch_size: texts per request (per call of a callable).
        caching: cache hosted and local vectors in the LM cache.
        max_concurrency: hosted batches in flight at once.
        cache: a ``dspex.lm.Cache``; default: the process's LM cache (``configure_cache``).
        **kwargs: request parameters (``dimensions``, ``api_key``, ``api_base``,
            ``transport``, ``num_retries``, ``timeout``), or a callable's keyword arguments.

    Example:
        >>> import numpy as np
        >>> embed = Embedder(lambda texts: np.ones((len(texts), 3)))
        >>> embed(["hello", "world"]).shape
        (2, 3)
        >>> embed("one text").shape
        (3,)
    """

    def __init__(
        self,
        model: str | Callable[..., Any],
        batch_size: int = 200,
        caching: bool = True,
        *,
        max_concurrency: int = 8,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, str) and not callable(model) and not _has_encode(model):
            raise UserError(
                f"Embedder(model={model!r}): pass a model name, 'local/<path>', or a callable "
                "that maps a list of strings to a 2-D array."
            )
        self.model = model
        self.batch_size = _positive(batch_size, "batch_size")
        self.caching = bool(caching)
        self.max_concurrency = _positive(max_concurrency, "max_concurrency")
        self.cache = cache
        client_args = {k: kwargs.pop(k) for k in _CLIENT_KEYS if k in kwargs}
        _register_credentials(kwargs)
        self.default_kwargs = kwargs
        self._client: EmbeddingClient | None = None
        if isinstance(model, str) and not model.startswith(_LOCAL_PREFIX):
            self._client = EmbeddingClient(model, **client_args)
        elif client_args:
            raise UserError(f"{sorted(client_args)} apply to hosted models only, not {model!r}.")

    @property
    def name(self) -> str:
        """The model's name in traces and cache keys."""
        if isinstance(self.model, str):
            return self.model
        model: Any = self.model
        fn = model.encode if _has_encode(model) else model
        return str(getattr(fn, "__qualname__", None) or type(fn).__name__)

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, batch_size={self.batch_size})"

    # -- calls -----------------------------------------------------------------------------
    def __call__(
        self,
        inputs: str | Sequence[str],
        batch_size: int | None = None,
        caching: bool | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed ``inputs``: a 2-D float32 array (one row per text), 1-D for one string."""
        texts, single, size, caching, kwargs = self._prepare(inputs, batch_size, caching, kwargs)
        if self._client is None and not caching:
            rows = [self._run_local_traced(b, kwargs) for b in _batches(texts, size)]
            return _assemble(rows, single, self.name)
        from dspex._runtime import run_sync

        return run_sync(self.acall(inputs, batch_size, caching, **kwargs))

    async def acall(
        self,
        inputs: str | Sequence[str],
        batch_size: int | None = None,
        caching: bool | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Async :meth:`__call__`: hosted batches run concurrently."""
        texts, single, size, caching, kwargs = self._prepare(inputs, batch_size, caching, kwargs)
        cache = self._cache() if caching else None
        vectors = await self._vectors(texts, size, kwargs, cache)
        return _assemble([vectors], single, self.name)

    def _prepare(
        self,
        inputs: str | Sequence[str],
        batch_size: int | None,
        caching: bool | None,
        kwargs: dict[str, Any],
    ) -> tuple[list[str], bool, int, bool, dict[str, Any]]:
        single = isinstance(inputs, str)
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None or isinstance(inputs, bytes):
            raise UserError(f"Embedder takes strings; got a {type(bad).__name__} among inputs.")
        client = sorted(k for k in kwargs if k in _CLIENT_KEYS or is_credential_param(k))
        if client:
            raise UserError(
                f"{client} cannot be set per call; they belong to the client. Pass them to "
                f"dspex.Embedder({self.name!r}, ...) instead."
            )
        size = self.batch_size if batch_size is None else _positive(batch_size, "batch_size")
        # Callables are never cached: their outputs cannot be keyed.
        cached = self.caching if caching is None else bool(caching)
        cached = cached and (isinstance(self.model, str))
        return texts, single, size, cached, {**self.default_kwargs, **kwargs}

    def _cache(self) -> Cache | None:
        if self.cache is not None:
            return self.cache
        from dspex.lm import default_cache

        return default_cache()

    async def _vectors(
        self, texts: list[str], size: int, kwargs: dict[str, Any], cache: Cache | None
    ) -> list[list[float]] | np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        keys = {t: embedding_key(self.name, t, kwargs) for t in unique} if cache else {}
        found = cache.get_vectors(list(keys.values())) if cache is not None else {}
        done = {t: np.frombuffer(found[k], dtype="<f4") for t, k in keys.items() if k in found}
        todo = [t for t in unique if t not in done]
        if not todo:
            self._announce_hits(len(texts))

        async def run(batch: list[str]) -> None:
            rows = await self._embed_batch(batch, kwargs)
            new = {t: np.asarray(r, dtype="<f4") for t, r in zip(batch, rows, strict=True)}
            done.update(new)
            if cache is not None:
                cache.put_vectors({keys[t]: v.tobytes() for t, v in new.items()})

        await bounded_gather(run, list(_batches(todo, size)), self.max_concurrency)
        dims = {v.shape[0] for v in done.values()}
        if len(dims) > 1:
            raise DataError(
                f"{self.name} returned vectors of different sizes {sorted(dims)}; a cached "
                "entry may be from other request params. Pass caching=False once to refresh."
            )
        return np.stack([done[t] for t in texts])

    async def _embed_batch(self, batch: list[str], kwargs: dict[str, Any]) -> Any:
        callbacks = active()
        if not callbacks:
            return (await self._send(batch, kwargs))[0]
        with observed(callbacks, "embed", self.name, (self, self.name, len(batch)), (self,)) as c:
            rows, c.result = await self._send(batch, kwargs)
        return rows

    async def _send(self, batch: list[str], kwargs: dict[str, Any]) -> tuple[Any, EmbedResult]:
        if self._client is None:
            rows = await asyncio.to_thread(self._run_local, batch, kwargs)
            return rows, EmbedResult(self.name, len(batch), Usage(calls=1), False)
        raw: RawEmbeddings = await self._client.embed(batch, kwargs)
        cost = cost_of(self.name, raw.prompt_tokens, 0)
        usage = Usage(calls=1, prompt_tokens=raw.prompt_tokens, cost=cost)
        return raw.vectors, EmbedResult(self.name, len(batch), usage, False)

    def _announce_hits(self, n: int) -> None:
        callbacks = active()
        if callbacks:
            usage = Usage(calls=1, cache_hits=1)
            with observed(callbacks, "embed", self.name, (self, self.name, n), (self,)) as c:
                c.result = EmbedResult(self.name, n, usage, True)

    def _run_local_traced(self, batch: list[str], kwargs: dict[str, Any]) -> Any:
        callbacks = active()
        if not callbacks:
            return self._run_local(batch, kwargs)
        with observed(callbacks, "embed", self.name, (self, self.name, len(batch)), (self,)) as c:
            rows = self._run_local(batch, kwargs)
            c.result = EmbedResult(self.name, len(batch), Usage(calls=1), False)
        return rows

    def _run_local(self, batch: list[str], kwargs: dict[str, Any]) -> Any:
        """A callable's or a sentence-transformers model's vectors for one batch."""
        import numpy as np

        model: Any = self.model
        if isinstance(model, str):
            fn: Callable[..., Any] = _local_model(model.removeprefix(_LOCAL_PREFIX)).encode
        else:
            fn = model.encode if _has_encode(model) else model
        out = np.asarray(fn(batch, **kwargs), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise UserError(
                f"The embedding function {self.name} returned shape {out.shape} for "
                f"{len(batch)} texts; it must return a 2-D array with one row per text."
            )
        return out


def _register_credentials(kwargs: Mapping[str, Any]) -> None:
    """Credentials among request params (litellm's ``aws_secret_access_key``, a header such
    as ``X-Api-Key``) are secrets: redacted wherever an error or a log line could show them.
    Other headers (``Content-Type``, an org id) are not: their values are ordinary text."""
    for key, value in kwargs.items():
        if key in _HEADER_KEYS and isinstance(value, Mapping):
            for name, header in value.items():
                if isinstance(name, str) and is_credential_param(name):
                    register_secret(header if isinstance(header, str) else None)
        elif is_credential_param(key):
            register_secret(value if isinstance(value, str) else None)


def _has_encode(model: Any) -> bool:
    # A SentenceTransformer is itself callable (torch's forward), but encode() is its API.
    return not inspect.isroutine(model) and callable(getattr(model, "encode", None))


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{what}={value!r}: pass a positive int.")
    return value


def _batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def _assemble(parts: Sequence[Any], single: bool, name: str) -> np.ndarray:
    import numpy as np

    arrays = [np.asarray(p, dtype=np.float32) for p in parts if len(p)]
    if not arrays:
        return np.zeros((0, 0), dtype=np.float32)
    try:
        out = np.concatenate(arrays, axis=0)
    except ValueError:
        raise DataError(f"{name} returned vectors of different sizes across batches.") from None
    return out[0] if single else out


def _local_model(name: str) -> Any:
    """A sentence-transformers model, loaded once per process."""
    with _LOCAL_LOCK:
        model = _LOCAL_MODELS.get(name)
        if model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ConfigurationError(
                    f"Embedder('local/{name}') needs sentence-transformers, which is not "
                    f"installed. Install it with: {LOCAL_INSTALL_HINT}."
                ) from None
            model = SentenceTransformer(name, device=os.environ.get("DSPEX_DEVICE") or None)
            _LOCAL_MODELS[name] = model
        return model
