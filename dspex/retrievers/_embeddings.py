"""``dspex.retrievers.Embeddings``: dense retrieval over a corpus, with an on-disk index.

DSPy's API (``Embeddings(corpus, embedder, k)``, ``save``/``load``/``from_saved``), with:

- exact search (numpy) below ``brute_force_threshold`` vectors, an HNSW graph (faiss, the
  ``retrieval`` extra) above it; ``index="exact"``/``"hnsw"`` forces one;
- ``add(passages)`` embeds and indexes new passages without rebuilding;
- ``save(path)`` writes a directory of plain files (JSON, ``.npy``, faiss's index file)
  under a temporary name and renames it into place, so a reader never sees half an index;
  ``load`` reads ``.npy`` with ``allow_pickle=False``: nothing read back runs code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex._jsonable import dumps
from dspex.errors import DataError, UserError
from dspex.primitives import Prediction
from dspex.retrievers._base import Passage, Retriever
from dspex.retrievers._files import CONFIG, read_config, save_directory
from dspex.retrievers._index import (
    RETRIEVAL_INSTALL_HINT,
    ExactIndex,
    HNSWIndex,
    VectorIndex,
    hnsw_available,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Embeddings", "EmbeddingsWithScores"]

_log = logging.getLogger("dspex.retrievers")
_FORMAT = "dspex.retrievers.Embeddings"
_VERSION = 1
_VECTORS = "corpus_embeddings.npy"


class Embeddings(Retriever):
    """Retrieve the passages whose embeddings are most similar to the query's.

    Args:
        corpus: the passages.
        embedder: a ``dspex.Embedder`` or any callable mapping a list of strings to a 2-D
            array (one row per string).
        k: passages per call.
        callbacks: accepted for DSPy compatibility; use ``dspex.context(callbacks=...)``.
        cache: must be ``False`` (DSPy's argument; the embedder caches vectors instead).
        brute_force_threshold: from this many vectors on, ``index="auto"`` uses the HNSW
            index (when faiss is installed) instead of exact search.
        normalize: unit-normalize vectors, so scores are cosine similarities.
        ids: one id per passage (default: its position, and ``indices`` are positions).
        index: ``"auto"``, ``"exact"`` or ``"hnsw"``.

    Example:
        >>> import dspex
        >>> from dspex.testing import hash_embed
        >>> corpus = ["Paris is the capital of France.", "The Nile is a river in Africa."]
        >>> search = dspex.retrievers.Embeddings(corpus, hash_embed, k=1)
        >>> search("Which river flows through Africa?").passages
        ['The Nile is a river in Africa.']
    """

    def __init__(
        self,
        corpus: Sequence[str],
        embedder: Callable[..., Any],
        k: int = 5,
        callbacks: Any = None,
        cache: bool = False,
        brute_force_threshold: int = 20_000,
        normalize: bool = True,
        *,
        ids: Sequence[str] | None = None,
        index: str = "auto",
    ) -> None:
        super().__init__(k=k)
        if cache:
            raise UserError(
                "Embeddings(cache=True) is not supported (as in DSPy); the embedder caches "
                "vectors: dspex.Embedder(model, caching=True)."
            )
        if not callable(embedder):
            raise UserError(f"embedder must be callable on a list of strings; got {embedder!r}.")
        if index not in ("auto", "exact", "hnsw"):
            raise UserError(f"index={index!r}: use 'auto', 'exact' or 'hnsw'.")
        if isinstance(brute_force_threshold, bool) or not isinstance(brute_force_threshold, int):
            raise UserError(f"brute_force_threshold={brute_force_threshold!r}: pass an int.")
        self.embedder = embedder
        self.callbacks = list(callbacks or [])
        self.normalize = normalize
        self.brute_force_threshold = brute_force_threshold
        self.index_kind = index
        corpus, custom = _checked_corpus(corpus), ids is not None
        self.corpus: list[str] = corpus
        self.ids: list[str] = _checked_ids(ids, len(corpus)) if custom else []
        self._custom_ids = custom
        vectors = self._embed(corpus)
        self._index: VectorIndex = self._build(vectors)
        self.corpus_embeddings = vectors

    # -- embedding and indexing ------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            raise UserError("Embeddings needs at least one passage.")
        out = np.asarray(self.embedder(list(texts)), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(texts):
            raise DataError(
                f"The embedder returned shape {out.shape} for {len(texts)} texts; it must "
                "return one row per text."
            )
        return self._normalized(out)

    def _normalized(self, vectors: np.ndarray) -> np.ndarray:
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self.normalize:
            return vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: np.ndarray = vectors / np.maximum(norms, 1e-10)
        return unit

    def _wants_hnsw(self, n: int) -> bool:
        if self.index_kind != "auto":
            return self.index_kind == "hnsw"
        if n < self.brute_force_threshold:
            return False
        if not hnsw_available():
            _log.warning(
                "Embeddings: %d vectors are searched exactly (slower per query) because faiss "
                "is not installed. For an approximate index: %s",
                n,
                RETRIEVAL_INSTALL_HINT,
            )
            return False
        return True

    def _build(self, vectors: np.ndarray) -> VectorIndex:
        if self._wants_hnsw(len(vectors)):
            index = HNSWIndex(int(vectors.shape[1]))
            index.add(vectors)
            return index
        return ExactIndex(vectors)

    @property
    def index(self) -> str:
        """The index in use: ``"exact"`` or ``"hnsw"``."""
        return self._index.kind

    def _identity(self) -> dict[str, Any]:
        # The index in use, not the one asked for: "auto" saves as what it chose, and a
        # reloaded index is the same retriever as the one saved.
        return {**super()._identity(), "index_kind": self.index}

    def add(self, passages: Sequence[str], ids: Sequence[str] | None = None) -> None:
        """Embed and index more passages (ids are required if the corpus has its own).

        Example:
            >>> from dspex.testing import hash_embed
            >>> search = Embeddings(["apples are red"], hash_embed, k=1)
            >>> search.add(["bananas are yellow"])
            >>> search("yellow fruit").passages
            ['bananas are yellow']
        """
        import numpy as np

        passages = _checked_corpus(passages)
        if self._custom_ids != (ids is not None):
            raise UserError(
                "Pass ids to add() exactly when the corpus was built with ids "
                f"(it was built {'with' if self._custom_ids else 'without'})."
            )
        new_ids = _checked_ids(ids, len(passages)) if ids is not None else []
        vectors = self._embed(passages)
        if vectors.shape[1] != self.corpus_embeddings.shape[1]:
            raise DataError(
                f"The embedder now returns {vectors.shape[1]}-dim vectors; the index holds "
                f"{self.corpus_embeddings.shape[1]}-dim ones. Use the same embedder."
            )
        all_vectors = np.concatenate([self.corpus_embeddings, vectors], axis=0)
        if self._index.kind == "exact" and self._wants_hnsw(len(all_vectors)):
            self._index = self._build(all_vectors)  # crossed the threshold: build the graph
        else:
            self._index.add(vectors)
        self.corpus_embeddings = all_vectors
        self.corpus.extend(passages)
        self.ids.extend(new_ids)

    # -- search ----------------------------------------------------------------------------
    def _search(self, query: str, k: int) -> list[Passage]:
        return self._passages(self._normalized(self._query_vector(self.embedder([query]))), k)

    async def _asearch(self, query: str, k: int) -> list[Passage]:
        acall = getattr(self.embedder, "acall", None)
        if acall is None:
            return await super()._asearch(query, k)
        return self._passages(self._normalized(self._query_vector(await acall([query]))), k)

    def _query_vector(self, raw: Any) -> np.ndarray:
        import numpy as np

        vector = np.asarray(raw, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.corpus_embeddings.shape[1]:
            raise DataError(
                f"The query embedding has {vector.shape[1]} dims, the index "
                f"{self.corpus_embeddings.shape[1]}. Use the embedder the index was built with."
            )
        return vector

    def _passages(self, query: np.ndarray, k: int) -> list[Passage]:
        positions, scores = self._index.search(query, k)
        return [
            Passage(id=self._id(int(i)), text=self.corpus[int(i)], score=float(s))
            for i, s in zip(positions[0], scores[0], strict=True)
        ]

    def _id(self, position: int) -> str:
        return self.ids[position] if self._custom_ids else str(position)

    def _prediction(self, passages: Sequence[Passage]) -> Prediction:
        # DSPy's indices are corpus positions; a corpus with its own ids returns those.
        pred = super()._prediction(passages)
        if not self._custom_ids:
            pred["indices"] = [int(p.id) for p in passages]
        return pred

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the corpus, vectors and index to the directory ``path`` (replacing it)."""
        import numpy as np

        def write(temp: Path) -> None:
            np.save(temp / _VECTORS, self.corpus_embeddings, allow_pickle=False)
            files = self._index.save(temp)
            config = {
                "format": _FORMAT,
                "version": _VERSION,
                "k": self.k,
                "normalize": self.normalize,
                "brute_force_threshold": self.brute_force_threshold,
                "index": self._index.kind,
                "index_files": files,
                "dim": int(self.corpus_embeddings.shape[1]),
                "corpus": self.corpus,
                "ids": self.ids if self._custom_ids else None,
            }
            (temp / CONFIG).write_bytes(dumps(config))

        save_directory(path, write)

    def load(self, path: str | os.PathLike[str], embedder: Callable[..., Any]) -> Embeddings:
        """Load a saved index into this instance (DSPy's ``load``); returns ``self``."""
        import numpy as np

        directory = Path(path)
        config = read_config(directory, _FORMAT, _VERSION, "Embeddings")
        if config.get("index") not in ("exact", "hnsw"):
            raise DataError(f"{directory}: unknown index kind {config.get('index')!r}.")
        try:
            vectors = np.load(directory / _VECTORS, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{directory / _VECTORS} is unreadable ({e}).") from None
        corpus, dim = config["corpus"], int(config["dim"])
        if vectors.ndim != 2 or vectors.shape != (len(corpus), dim):
            raise DataError(f"{directory}: the vectors do not match the corpus; save it again.")
        Retriever.__init__(self, k=int(config["k"]))
        self.embedder = embedder
        self.callbacks = []
        self.normalize = bool(config["normalize"])
        self.brute_force_threshold = int(config["brute_force_threshold"])
        self.index_kind = str(config["index"])
        self.corpus = list(corpus)
        self._custom_ids = config.get("ids") is not None
        self.ids = _checked_ids(config["ids"], len(corpus)) if self._custom_ids else []
        self.corpus_embeddings = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index = (
            HNSWIndex.load(directory, dim, len(corpus))
            if config["index"] == "hnsw"
            else ExactIndex(self.corpus_embeddings)
        )
        return self

    @classmethod
    def from_saved(cls, path: str | os.PathLike[str], embedder: Callable[..., Any]) -> Embeddings:
        """An ``Embeddings`` from a saved directory, without embedding the corpus again.

        Example:
            >>> import tempfile
            >>> from dspex.testing import hash_embed
            >>> d = tempfile.mkdtemp()
            >>> Embeddings(["a red apple", "a yellow banana"], hash_embed, k=1).save(d)
            >>> Embeddings.from_saved(d, hash_embed)("banana").passages
            ['a yellow banana']
        """
        return cls.__new__(cls).load(path, embedder)

    def __repr__(self) -> str:
        return f"Embeddings({len(self.corpus)} passages, k={self.k}, index={self.index!r})"


def _checked_corpus(corpus: Sequence[str]) -> list[str]:
    if isinstance(corpus, str) or not isinstance(corpus, Sequence):
        raise UserError("corpus must be a list of passage strings.")
    bad = next((p for p in corpus if not isinstance(p, str)), None)
    if bad is not None:
        raise UserError(f"corpus must hold strings; found a {type(bad).__name__}.")
    return list(corpus)


def _checked_ids(ids: Any, n: int) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence) or len(ids) != n:
        raise UserError(f"ids must be a list with one id per passage ({n}).")
    out = [str(i) for i in ids]
    if len(set(out)) != len(out):
        raise UserError("ids must be unique.")
    return out


class EmbeddingsWithScores(Embeddings):
    """DSPy's name for an ``Embeddings`` whose predictions carry ``scores``; dspex's
    ``Embeddings`` always does, so this is the same retriever under DSPy's name."""
