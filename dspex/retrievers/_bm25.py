"""``dspex.retrievers.BM25``: sparse, lexical retrieval over a corpus with bm25s."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dspex._jsonable import dumps
from dspex.errors import ConfigurationError, UserError
from dspex.primitives import Prediction
from dspex.retrievers._base import Passage, Retriever
from dspex.retrievers._files import CONFIG, read_config, save_directory

__all__ = ["BM25"]

BM25_INSTALL_HINT = "pip install bm25s"
_FORMAT = "dspex.retrievers.BM25"
_VERSION = 1


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
        if self.ids is not None and len(set(self.ids)) != len(self.ids):
            raise UserError("ids must be unique.")
        if not (stopwords is None or stopwords == "en" or isinstance(stopwords, list)):
            raise UserError(f"stopwords={stopwords!r}: use 'en', a list of words, or None.")
        self.params: dict[str, Any] = {"k1": k1, "b": b, "method": method}
        self.stopwords = stopwords
        self.stemmer = stemmer
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

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the corpus and parameters to the directory ``path`` as JSON (replacing it);
        :meth:`from_saved` indexes them again (bm25s indexes thousands of passages a second),
        so no engine-specific or pickled file is ever read back."""

        def write(temp: Path) -> None:
            config = {
                "format": _FORMAT,
                "version": _VERSION,
                "k": self.k,
                "corpus": self.corpus,
                "ids": self.ids,
                "params": self.params,
                "stopwords": self.stopwords,
                "stemmed": self.stemmer is not None,
            }
            (temp / CONFIG).write_bytes(dumps(config))

        save_directory(path, write)

    @classmethod
    def from_saved(
        cls, path: str | os.PathLike[str], stemmer: Callable[[str], str] | None = None
    ) -> BM25:
        """A ``BM25`` from a directory :meth:`save` wrote (``stemmer``: the one it used).

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp()
            >>> BM25(["red apples", "yellow bananas"], k=1).save(d)
            >>> BM25.from_saved(d)("bananas").passages
            ['yellow bananas']
        """
        config = read_config(Path(path), _FORMAT, _VERSION, "BM25")
        if bool(config.get("stemmed")) != (stemmer is not None):
            raise UserError(
                f"{path} was indexed {'with' if config.get('stemmed') else 'without'} a "
                "stemmer; pass the same stemmer to from_saved."
            )
        params = config.get("params") or {}
        return cls(
            config["corpus"],
            k=int(config["k"]),
            ids=config.get("ids"),
            k1=float(params.get("k1", 1.5)),
            b=float(params.get("b", 0.75)),
            method=str(params.get("method", "lucene")),
            stopwords=config.get("stopwords"),
            stemmer=stemmer,
        )

    def __repr__(self) -> str:
        return f"BM25({len(self.corpus)} passages, k={self.k})"
