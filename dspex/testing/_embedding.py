"""A deterministic stand-in for an embedding model: hashed bag of words and character
trigrams, unit-normalized.

Two texts that share words (or word pieces) get a high cosine similarity, texts that share
none get about zero, so dense retrieval over these vectors behaves like a lexical retriever:
good enough to test ranking, indexes and RAG programs offline, and the same on every machine
and Python (blake2b, not the salted ``hash``). The loopback server answers
``POST /v1/embeddings`` with it.

Example:
    >>> from dspex.testing import hash_embed
    >>> a, b, c = hash_embed(["the capital of France", "France's capital city", "blue whales"])
    >>> round(sum(x * y for x, y in zip(a, b)), 2) > round(sum(x * y for x, y in zip(a, c)), 2)
    True
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["DEFAULT_DIM", "embedding_response", "hash_embed"]

DEFAULT_DIM = 256
_WORD = re.compile(r"[a-z0-9]+")
# Words that every question and passage shares carry no signal; dropping them keeps the
# similarity about content, as a trained model's is.
_STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "how",
        "with",
        "does",
        "did",
        "do",
    }
)
_TRIGRAM_WEIGHT = 0.35


@lru_cache(maxsize=65536)
def _slot(feature: str, dim: int) -> tuple[int, float]:
    """The feature's dimension and sign (feature hashing with a sign bit)."""
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


def _features(text: str) -> list[tuple[str, float]]:
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOP]
    out = [("w:" + w, 1.0) for w in words]
    for w in words:
        padded = f"<{w}>"
        out.extend(("c:" + padded[i : i + 3], _TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return out


def hash_embed(texts: Sequence[str], dim: int = DEFAULT_DIM) -> list[list[float]]:
    """One unit vector of ``dim`` floats per text (all zeros for a text with no words).

    Example:
        >>> v = hash_embed(["hello world"], dim=8)[0]
        >>> len(v), round(sum(x * x for x in v), 6)
        (8, 1.0)
    """
    vectors = []
    for text in texts:
        vec = [0.0] * dim
        for feature, weight in _features(text):
            index, sign = _slot(feature, dim)
            vec[index] += sign * weight
        norm = math.sqrt(sum(x * x for x in vec))
        vectors.append([x / norm for x in vec] if norm else vec)
    return vectors


def embedding_response(model: str, inputs: Any, dim: int | None = None) -> dict[str, Any]:
    """OpenAI's ``/v1/embeddings`` answer for ``inputs`` (a string or a list of strings).

    ``dim`` defaults to the request's ``dimensions`` or :data:`DEFAULT_DIM`; ``usage`` counts
    whitespace-separated words as tokens.

    Example:
        >>> r = embedding_response("hash", ["a b", "c"], dim=4)
        >>> r["object"], len(r["data"]), r["usage"]
        ('list', 2, {'prompt_tokens': 3, 'total_tokens': 3})
    """
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("input must be a non-empty string or list of strings")
    vectors = hash_embed(texts, dim or DEFAULT_DIM)
    tokens = sum(len(t.split()) for t in texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
