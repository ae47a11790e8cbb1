"""``dspex.retrievers.BM25``: sparse, lexical retrieval over a corpus with bm25s."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from dspex.errors import ConfigurationError, UserError
from dspex.primitives import Prediction
from dspex.retrievers._base import Passage, Retriever

__all__ = ["BM25"]

BM25_INSTALL_HINT = "pip install bm25s"


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError:  # a core dependency; only a broken install lacks it
        raise ConfigurationError(
            f"dspex.retrievers.BM25 needs bm25s, which is not installed: {BM25_INSTALL_HINT}."
        ) from None
    return bm25s


class BM25(Retriever):
    """Okapi BM25 over a corpus (bm25s: sparse matrices, milliseconds per query).

    Words are lowercased and split on word characters; English stop words are dropped
    (``stopwords=None`` keeps them). Passages that share no word with the query score zero
    and are not returned, so a call may return fewer than ``k``.

    Args:
        corpus: the passages.
        k: passages per call.
        ids: one id per passage (default: its position, and ``indices`` are positions).
        k1, b: BM25's term-frequency saturation and length normalization.
        method: bm25s's variant: ``"lucene"``, ``"robertson"``, ``"atire"``, ``"bm25l"``,
            ``"bm25+"``.
        stopwords: ``"en"``, a list of words, or ``None``.
        stemmer: a function from a word to its stem (e.g. ``Stemmer.Stemmer("english")
            .stemWord`` from PyStemmer), or ``None``.

    Example:
        >>> import dspex
        >>> corpus = ["Paris is the capital of France.", "Berlin is in Germany."]
        >>> dspex.retrievers.BM25(corpus, k=1)("capital of France").passages
        ['Paris is the capital of France.']
    """

    def __init__(
        self,
        corpus: Sequence[str],
        k: int = 5,
        *,
        ids: Sequence[str] | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | list[str] | None = "en",
        stemmer: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__(k=k)
        if isinstance(corpus, str) or not isinstance(corpus, Sequence) or not corpus:
            raise UserError("BM25 needs a non-empty list of passage strings.")
        bad = next((p for p in corpus if not isinstance(p, str)), None)
        if bad is not None:
            raise UserError(f"corpus must hold strings; found a {type(bad).__name__}.")
        if ids is not None and (isinstance(ids, str) or len(ids) != len(corpus)):
            raise UserError(f"ids must be a list with one id per passage ({len(corpus)}).")
        self.corpus = list(corpus)
        self.ids = [str(i) for i in ids] if ids is not None else None
        bm25s = _bm25s()
        self._tokenizer = bm25s.tokenization.Tokenizer(stopwords=stopwords or [], stemmer=stemmer)
        tokens = self._tokenizer.tokenize(self.corpus, show_progress=False, return_as="tuple")
        self._model = bm25s.BM25(k1=k1, b=b, method=method)
        self._model.index(tokens, show_progress=False)
        # The tokenizer's vocabulary is shared state: one query tokenized at a time.
        self._lock = threading.Lock()

    def _search(self, query: str, k: int) -> list[Passage]:
        with self._lock:
            words = self._tokenizer.tokenize(
                [query], update_vocab=False, show_progress=False, return_as="string"
            )
        known = [w for w in words[0] if w in self._model.vocab_dict]
        if not known:
            return []
        docs, scores = self._model.retrieve(
            [known], k=min(k, len(self.corpus)), show_progress=False, n_threads=1
        )
        return [
            Passage(id=self._id(int(i)), text=self.corpus[int(i)], score=float(s))
            for i, s in zip(docs[0], scores[0], strict=True)
            if s > 0
        ]

    def _id(self, position: int) -> str:
        return self.ids[position] if self.ids is not None else str(position)

    def _prediction(self, passages: Sequence[Passage]) -> Prediction:
        pred = super()._prediction(passages)
        if self.ids is None:  # DSPy's indices are corpus positions
            pred["indices"] = [int(p.id) for p in passages]
        return pred

    def __repr__(self) -> str:
        return f"BM25({len(self.corpus)} passages, k={self.k})"
