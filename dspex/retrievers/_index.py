"""The vector indexes behind ``dspex.retrievers.Embeddings``: exact (numpy) and HNSW (faiss).

Both hold unit vectors and score by inner product (cosine similarity), take positions
``0..n-1`` as keys, grow by :meth:`add`, and save to / load from a directory of plain files
(``.npy`` read with ``allow_pickle=False``, faiss's own binary index format): nothing read
back runs code. Why these two, and where the switch lies: docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dspex.errors import ConfigurationError, DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RETRIEVAL_INSTALL_HINT", "ExactIndex", "HNSWIndex", "VectorIndex", "hnsw_available"]

RETRIEVAL_INSTALL_HINT = "pip install 'dspex[retrieval]' (faiss-cpu)"
IndexKind = Literal["exact", "hnsw"]
_HNSW_FILE = "index.faiss"


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

    return importlib.util.find_spec("faiss") is not None


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigurationError(
            "The approximate (HNSW) vector index needs faiss, which is not installed. Install "
            f"it with: {RETRIEVAL_INSTALL_HINT}, or pass index='exact'."
        ) from None
    return faiss


class HNSWIndex:
    """An approximate nearest-neighbour graph (faiss's ``IndexHNSWFlat``), for large corpora.

    Args:
        dim: vector size.
        m: graph degree (HNSW's ``M``); more is better recall, more memory.
        ef_construction: candidates considered while inserting.
        ef_search: candidates considered per query; more is better recall, slower queries.
    """

    kind: IndexKind = "hnsw"

    def __init__(
        self,
        dim: int,
        *,
        m: int = 16,
        ef_construction: int = 128,
        ef_search: int = 64,
        _index: Any = None,
    ) -> None:
        self.dim = dim
        faiss = _faiss()
        if _index is None:
            _index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            _index.hnsw.efConstruction = ef_construction
        _index.hnsw.efSearch = ef_search
        self._index = _index

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        import numpy as np

        # faiss numbers vectors in insertion order: positions, as Embeddings expects.
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        k = min(k, len(self))
        scores, keys = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        # Fewer hits than asked come back padded with -1: drop the padding.
        found = int((keys >= 0).sum(axis=1).min()) if len(keys) else 0
        return keys[:, :found].astype(np.int64), scores[:, :found]

    def save(self, directory: Path) -> list[str]:
        _faiss().write_index(self._index, str(directory / _HNSW_FILE))
        return [_HNSW_FILE]

    @classmethod
    def load(cls, directory: Path, dim: int, n: int) -> HNSWIndex:
        path = directory / _HNSW_FILE
        if not path.is_file():
            raise DataError(f"{directory} has no {_HNSW_FILE}; save the index again.")
        try:
            index = _faiss().read_index(str(path))
        except RuntimeError as e:
            raise DataError(f"{path} is unreadable ({e}); save the index again.") from None
        if getattr(index, "hnsw", None) is None or index.d != dim or index.ntotal != n:
            raise DataError(
                f"{path} does not match the saved vectors ({n} x {dim}); save the index again."
            )
        return cls(dim, _index=index)
