"""The vector indexes behind ``dspex.retrievers.Embeddings``: exact (numpy) and HNSW (usearch).

Both hold unit vectors and score by inner product (cosine similarity), take positions
``0..n-1`` as keys, grow by :meth:`add`, and save to / load from a directory of plain files
(``.npy`` read with ``allow_pickle=False``, usearch's own binary format): nothing read back
runs code. Why these two, and where the switch lies: docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dspex.errors import ConfigurationError, DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RETRIEVAL_INSTALL_HINT", "ExactIndex", "HNSWIndex", "VectorIndex", "hnsw_available"]

RETRIEVAL_INSTALL_HINT = "pip install 'dspex[retrieval]' (usearch)"
IndexKind = Literal["exact", "hnsw"]
_HNSW_FILE = "index.usearch"


class VectorIndex(Protocol):
    """What ``Embeddings`` needs from an index."""

    kind: IndexKind

    def __len__(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, scores)``, each ``(len(queries), <=k)``, best first."""
        ...

    def save(self, directory: Path) -> list[str]:
        """Write the index's own files into ``directory``; returns their names."""
        ...


class ExactIndex:
    """Brute-force inner product over every stored vector: exact, no extra dependency.

    Example:
        >>> import numpy as np
        >>> index = ExactIndex(np.eye(3, dtype=np.float32))
        >>> index.search(np.array([[0, 1, 0]], dtype=np.float32), 2)[0].tolist()
        [[1, 0]]
    """

    kind: IndexKind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def add(self, vectors: np.ndarray) -> None:
        import numpy as np

        self.vectors = np.concatenate([self.vectors, vectors], axis=0)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k(queries @ self.vectors.T, k)

    def save(self, directory: Path) -> list[str]:
        return []  # Embeddings saves the vectors themselves


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores``, best first (ties: lower position)."""
    import numpy as np

    k = min(k, scores.shape[1])
    if k == 0:
        empty = np.zeros((scores.shape[0], 0))
        return empty.astype(np.int64), empty
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # lexsort: by score descending, then by position, so equal scores rank stably.
    order = np.lexsort((part, -part_scores), axis=1)
    positions = np.take_along_axis(part, order, axis=1)
    return positions, np.take_along_axis(part_scores, order, axis=1)


def hnsw_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("usearch") is not None


def _usearch() -> Any:
    try:
        from usearch import index as usearch_index
    except ImportError:
        raise ConfigurationError(
            "The approximate (HNSW) vector index needs usearch, which is not installed. Install "
            f"it with: {RETRIEVAL_INSTALL_HINT}, or pass index='exact'."
        ) from None
    return usearch_index


class HNSWIndex:
    """An approximate nearest-neighbour graph (usearch's HNSW), for large corpora.

    Args:
        dim: vector size.
        connectivity: graph degree (usearch's ``M``); more is better recall, more memory.
        expansion_add: candidates considered while inserting (``ef_construction``).
        expansion_search: candidates considered per query (``ef``); more is better recall,
            slower queries.
    """

    kind: IndexKind = "hnsw"

    def __init__(
        self,
        dim: int,
        *,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        _index: Any = None,
    ) -> None:
        self.dim = dim
        if _index is None:
            _index = _usearch().Index(
                ndim=dim,
                metric="ip",
                dtype="f32",
                connectivity=connectivity,
                expansion_add=expansion_add,
                expansion_search=expansion_search,
            )
        self._index = _index

    def __len__(self) -> int:
        return len(self._index)

    def add(self, vectors: np.ndarray) -> None:
        import numpy as np

        start = len(self._index)
        keys = np.arange(start, start + len(vectors), dtype=np.uint64)
        self._index.add(keys, vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        k = min(k, len(self._index))
        found = self._index.search(queries, k)
        keys = np.atleast_2d(np.asarray(found.keys, dtype=np.int64))
        # usearch's "ip" distance is 1 - inner product.
        scores = 1.0 - np.atleast_2d(np.asarray(found.distances, dtype=np.float32))
        # One query gives usearch's Matches (no counts), several its BatchMatches.
        counts = np.atleast_1d(np.asarray(getattr(found, "counts", keys.shape[1])))
        n = int(counts.min())
        if n < keys.shape[1]:  # fewer hits than asked: drop the padding
            keys, scores = keys[:, :n], scores[:, :n]
        return keys, scores

    def save(self, directory: Path) -> list[str]:
        self._index.save(str(directory / _HNSW_FILE))
        return [_HNSW_FILE]

    @classmethod
    def load(cls, directory: Path, dim: int, n: int) -> HNSWIndex:
        path = directory / _HNSW_FILE
        if not path.is_file():
            raise DataError(f"{directory} has no {_HNSW_FILE}; save the index again.")
        index = _usearch().Index.restore(str(path))
        if index is None or index.ndim != dim or len(index) != n:
            raise DataError(
                f"{path} does not match the saved vectors ({n} x {dim}); save the index again."
            )
        return cls(dim, _index=index)
