"""What the vector-database clients share: importing an engine's official client with an
install hint, embedding queries and corpora with a dspex ``Embedder`` or any callable, and
checking a corpus (texts, ids, metadata) before anything is sent.

An embedder is anything callable on a list of texts that returns one vector per text (a
``dspex.Embedder``, a DSPy ``Embedder``, a sentence-transformers ``model.encode``, a Chroma
``EmbeddingFunction``, a plain function): a 2-D numpy array or a list of lists of floats.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspex.errors import ConfigurationError, DataError, UserError

__all__ = ["Corpus", "check_embedder", "corpus_of", "embed", "require_engine"]

# extra -> (what it is, the distribution it installs)
_EXTRAS = {
    "qdrant": ("Qdrant", "qdrant-client"),
    "chroma": ("Chroma", "chromadb"),
    "weaviate": ("Weaviate", "weaviate-client"),
    "pinecone": ("Pinecone", "pinecone"),
}


def require_engine(module: str, extra: str) -> Any:
    """Import ``module`` (an engine's client) or raise a ``ConfigurationError`` saying which
    extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        engine, dist = _EXTRAS[extra]
        raise ConfigurationError(
            f"The {engine} retriever needs the {dist!r} package, which is not installed ({e}). "
            f"Install it with: pip install 'dspex[{extra}]'"
        ) from None


def check_embedder(embedder: Any, owner: str, *, required: bool = True) -> Any:
    """``embedder`` if it is callable (or ``None`` when not ``required``), else a UserError."""
    if embedder is None and not required:
        return None
    if not callable(embedder):
        raise UserError(
            f"{owner} needs an embedder for the queries: a dspex.Embedder or any callable "
            f"from a list of texts to one vector per text; got {embedder!r}."
        )
    return embedder


def embed(embedder: Callable[..., Any], texts: Sequence[str], owner: str) -> list[list[float]]:
    """``embedder(texts)`` as lists of floats, one per text, all of one dimension."""
    raw = embedder(list(texts))
    rows = raw.tolist() if hasattr(raw, "tolist") else raw
    if isinstance(rows, Sequence) and len(texts) == 1 and rows and _is_vector(rows):
        rows = [rows]  # an embedder that returns one flat vector for a single text
    if not isinstance(rows, Sequence) or len(rows) != len(texts):
        got = len(rows) if isinstance(rows, Sequence) else type(raw).__name__
        raise UserError(
            f"{owner}: the embedder returned {got} vectors for {len(texts)} texts; it must "
            "return one vector per text."
        )
    vectors = []
    for row in rows:
        if not _is_vector(row):
            raise UserError(f"{owner}: the embedder returned {row!r:.80}, not a vector of floats.")
        vectors.append([float(x) for x in row])
    if len({len(v) for v in vectors}) > 1:
        raise UserError(f"{owner}: the embedder returned vectors of different dimensions.")
    return vectors


def _is_vector(row: Any) -> bool:
    return (
        isinstance(row, Sequence)
        and bool(row)
        and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in row
        )
    )


@dataclass(frozen=True)
class Corpus:
    """Texts to store, each with an id and its metadata (checked, aligned lists)."""

    texts: list[str]
    ids: list[str]
    metadatas: list[dict[str, Any]]

    def batches(self, size: int) -> list[Corpus]:
        """The corpus in slices of ``size`` (embedded and sent one slice at a time)."""
        return [
            Corpus(self.texts[i : i + size], self.ids[i : i + size], self.metadatas[i : i + size])
            for i in range(0, len(self.texts), size)
        ]


def corpus_of(
    texts: Sequence[str],
    ids: Sequence[str | int] | None,
    metadatas: Sequence[Mapping[str, Any]] | None,
    *,
    reserved: Sequence[str] = (),
    start: int = 0,
) -> Corpus:
    """Check ``texts`` / ``ids`` / ``metadatas`` and align them; ids default to positions
    (``start``, ``start + 1``, ...). A metadata key in ``reserved`` (where the text and id
    are stored) is refused."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise UserError("Pass the corpus as a non-empty list of passage strings.")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise DataError(
            f"Passage {bad} is {texts[bad]!r:.60}; every passage must be a non-empty str."
        )
    if ids is None:
        id_list = [str(start + i) for i in range(len(texts))]
    else:
        if len(ids) != len(texts):
            raise UserError(f"Got {len(ids)} ids for {len(texts)} passages; pass one id each.")
        id_list = [str(i) for i in ids]
        if len(set(id_list)) != len(id_list):
            raise DataError("The ids are not unique; each passage needs its own id.")
    if metadatas is None:
        metas: list[dict[str, Any]] = [{} for _ in texts]
    else:
        if len(metadatas) != len(texts):
            raise UserError(
                f"Got {len(metadatas)} metadata dicts for {len(texts)} passages; pass one each."
            )
        metas = [dict(m) for m in metadatas]
        clash = next((k for m in metas for k in m if k in reserved), None)
        if clash is not None:
            raise DataError(
                f"Metadata key {clash!r} is where the passage text or id is stored; rename it."
            )
    return Corpus(list(texts), id_list, metas)
