"""``dspex.retrievers.Hybrid``: several retrievers fused by reciprocal-rank fusion (RRF)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from dspex.errors import UserError
from dspex.retrievers._base import Passage, Retriever, check_k

__all__ = ["Hybrid"]


class Hybrid(Retriever):
    """Reciprocal-rank fusion of several retrievers (typically dense + BM25).

    Each retriever returns its top ``depth`` passages; a passage's fused score is
    ``sum(weight / (rrf_k + rank))`` over the lists it appears in (rank from 1), as in
    Cormack et al. (2009). Scores on different scales (cosine, BM25) never need calibrating:
    only ranks count. The retrievers run concurrently.

    Args:
        retrievers: the retrievers to fuse (each a ``dspex.retrievers.Retriever``).
        k: passages per call.
        rrf_k: the rank offset; larger flattens the advantage of the very top ranks.
        weights: one weight per retriever (default: all 1).
        depth: how many passages each retriever returns (default: ``max(2 * k, 10)``).
        fuse_on: what makes two hits the same passage: its ``"text"`` (safe when the
            retrievers number passages differently) or its ``"id"``.

    Example:
        >>> import dspex
        >>> from dspex.testing import hash_embed
        >>> corpus = ["Paris is the capital of France.", "Lyon is a city in France."]
        >>> hybrid = dspex.retrievers.Hybrid(
        ...     [dspex.retrievers.BM25(corpus), dspex.retrievers.Embeddings(corpus, hash_embed)],
        ...     k=1,
        ... )
        >>> hybrid("capital of France").passages
        ['Paris is the capital of France.']
    """

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        k: int = 5,
        rrf_k: int = 60,
        *,
        weights: Sequence[float] | None = None,
        depth: int | None = None,
        fuse_on: Literal["text", "id"] = "text",
    ) -> None:
        super().__init__(k=k)
        retrievers = list(retrievers)
        if not retrievers or not all(isinstance(r, Retriever) for r in retrievers):
            raise UserError(
                "Hybrid needs a list of dspex.retrievers.Retriever (e.g. [BM25(corpus), "
                "Embeddings(corpus, embedder)]); wrap other callables in CallableRetriever."
            )
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise UserError(f"rrf_k={rrf_k!r}: pass an int >= 0 (60 is the usual choice).")
        weights = [1.0] * len(retrievers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(retrievers) or any(w < 0 for w in weights):
            raise UserError("weights must hold one non-negative number per retriever.")
        if fuse_on not in ("text", "id"):
            raise UserError(f"fuse_on={fuse_on!r}: use 'text' or 'id'.")
        self.retrievers = retrievers
        self.rrf_k = rrf_k
        self.weights = weights
        self.depth = None if depth is None else check_k(depth, "depth")
        self.fuse_on = fuse_on

    async def _asearch(self, query: str, k: int) -> list[Passage]:
        depth = self.depth or max(2 * k, 10)
        lists = await asyncio.gather(*(r.asearch(query, depth) for r in self.retrievers))
        return self.fuse(lists)[:k]

    def fuse(self, ranked_lists: Sequence[Sequence[Passage]]) -> list[Passage]:
        """Fuse ranked lists (one per retriever, best first) into one, best first."""
        scores: dict[str, float] = {}
        first: dict[str, Passage] = {}
        # Per passage, its rank in each retriever's list (None where it is absent).
        ranks: dict[str, list[int | None]] = {}
        n = len(self.retrievers)
        for i, (weight, passages) in enumerate(zip(self.weights, ranked_lists, strict=True)):
            for rank, passage in enumerate(passages, start=1):
                key = passage.text if self.fuse_on == "text" else passage.id
                seen = ranks.setdefault(key, [None] * n)
                if seen[i] is not None:
                    continue  # a retriever listing one passage twice counts it once
                seen[i] = rank
                scores[key] = scores.get(key, 0.0) + weight / (self.rrf_k + rank)
                first.setdefault(key, passage)
        # Ties keep first-seen order (the first retriever's ranking), so results are stable.
        order = sorted(scores, key=lambda key: -scores[key])
        return [
            Passage(
                id=first[key].id,
                text=first[key].text,
                score=scores[key],
                metadata={**first[key].metadata, "ranks": ranks[key]},
            )
            for key in order
        ]

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.retrievers)
        return f"Hybrid([{names}], k={self.k}, rrf_k={self.rrf_k})"
