"""LM clients: ``LM``, its cache, retries, usage and history.

Example:
    >>> import dspex.lm
    >>> lm = dspex.lm.LM("openai/gpt-4o-mini", temperature=0.0)
    >>> lm.model
    'openai/gpt-4o-mini'
"""

from dspex.lm._base import BaseLM
from dspex.lm._budget import Budget
from dspex.lm._cache import Cache, configure_cache, default_cache, request_key
from dspex.lm._history import HistoryEntry, inspect_history
from dspex.lm._limit import ConcurrencyLimit, Throttle
from dspex.lm._litellm import LiteLLMTransport
from dspex.lm._lm import LM
from dspex.lm._openai import OpenAITransport
from dspex.lm._pricing import register_price
from dspex.lm._stream import LMStream, StreamChunk
from dspex.lm._types import LMRequest, LMResponse, RawCompletion, StreamingTransport, Transport

__all__ = [
    "LM",
    "BaseLM",
    "Budget",
    "Cache",
    "ConcurrencyLimit",
    "HistoryEntry",
    "LMRequest",
    "LMResponse",
    "LMStream",
    "LiteLLMTransport",
    "OpenAITransport",
    "RawCompletion",
    "StreamChunk",
    "StreamingTransport",
    "Throttle",
    "Transport",
    "configure_cache",
    "default_cache",
    "inspect_history",
    "register_price",
    "request_key",
]
