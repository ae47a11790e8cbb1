"""A logged program's retrievers: their indexes travel as files, never as pickles.

A retriever is not program state: ``dump_state`` holds prompts, and a retriever holds an
index (vectors, a BM25 table) and a client (the embedder's endpoint and key). So a program
whose ``Retrieve`` modules carry their own retriever (``Retrieve(k, rm=...)``) is logged as
its JSON state plus, per retriever, the index the retriever saves with its own ``save``
(JSON and ``.npy``, no pickle) in ``data/dspex/retrievers/<module path>/``. The manifest
records where each goes back (the module path) with the module's ``k``, which retriever
class reads it (one of a fixed table, never a name chosen by the file), the sha256 of its
files, and the embedder's *model name* only; a ``Retrieve`` that uses the context's ``rm``
records only its ``k``. Loading rebuilds each retriever from its directory with an embedder made
by the loading process: the one passed to ``load_model(..., embedder=...)``, or one built
from the recorded model name whose endpoint and key come from this process's environment.

Packing saves each index once into a content-addressed directory under the dspex cache
(``indexes/<sha256>``), so the packed program stays a value a Prefect task can take: a path
and a digest, not a live object.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dspex.errors import ProgramIntegrityError, UserError
from dspex.primitives import Module
from dspex.primitives._trust import code_digest
from dspex.retrievers._base import check_k

__all__ = [
    "RETRIEVERS_DIR",
    "PackedRetriever",
    "attach_retrievers",
    "bundle_retrievers",
    "pack_retrievers",
]

RETRIEVERS_DIR = "retrievers"
# The retriever classes a model may name, by the name the manifest records. A file never
# chooses what is imported: only these, each reading its own JSON/.npy files.
_LOADABLE = ("Embeddings", "BM25")


@dataclass(frozen=True)
class PackedRetriever:
    """One retriever of a packed program.

    Attributes:
        path: the ``Retrieve`` module, as ``named_sub_modules`` names it without ``self.``
            (``"retrieve"``).
        k: the module's ``k`` (a setting, not predictor state, so it is recorded here).
        kind: its retriever's class, one of the loadable ones (``"Embeddings"``,
            ``"BM25"``); ``None`` for a module that uses the context's ``rm``.
        source: the local directory its index was saved to (content-addressed).
        sha256: the digest of that directory's files.
        embedder: the embedder's model name (``None`` when it has none, or a callable that
            the loading process must pass as ``embedder=``).
    """

    path: str
    k: int
    kind: str | None = None
    source: str = ""
    sha256: str = ""
    embedder: str | None = None

    def manifest(self) -> dict[str, Any]:
        """What the model's manifest records (the local ``source`` stays here)."""
        if self.kind is None:
            return {"path": self.path, "k": self.k}
        entry = asdict(self)
        entry.pop("source")
        entry["dir"] = f"{RETRIEVERS_DIR}/{_dir_name(self.path)}"
        return entry


def _dir_name(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path)


def pack_retrievers(program: Module) -> tuple[PackedRetriever, ...]:
    """Save the index of every retriever the program holds; their packed references.

    A ``Retrieve`` without its own retriever (one that uses the context's ``rm``) logs only
    its ``k``: the serving process configures the retriever.

    Raises:
        UserError: a retriever cannot be saved as files (a remote client, a callable).
    """
    packed = []
    for path, module in _all_retrieve_modules(program):
        rm = module.rm
        if rm is None:
            packed.append(PackedRetriever(path=path, k=module.k))
            continue
        kind = type(rm).__name__
        saveable = callable(getattr(rm, "save", None)) and callable(
            getattr(type(rm), "from_saved", None)
        )
        if kind not in _LOADABLE or type(rm).__module__.split(".")[0] != "dspex" or not saveable:
            raise UserError(
                f"{path}.rm is a {kind}, whose index cannot be logged with the program (only "
                "dspex.retrievers.Embeddings and BM25 save theirs as files). Log the program "
                f"with {path}.rm=None and configure the retriever in the serving process "
                "(dspex.configure(rm=...)), where its endpoint lives."
            )
        if getattr(rm, "stemmer", None) is not None:
            raise UserError(
                f"{path}.rm is a BM25 with a stemmer, a function no file can bring back. Log "
                f"the program with {path}.rm=None and configure the BM25 in the serving "
                "process (dspex.configure(rm=BM25.from_saved(path, stemmer))), or drop it."
            )
        source, digest = _save_index(rm)
        embedder = getattr(rm, "embedder", None)
        model = getattr(embedder, "model", None)
        packed.append(
            PackedRetriever(
                path=path,
                k=module.k,
                kind=kind,
                source=str(source),
                sha256=digest,
                embedder=model if isinstance(model, str) else None,
            )
        )
    return tuple(packed)


def _index_root() -> Path:
    from dspex.lm._cache import cache_directory

    return cache_directory() / "indexes"


def _save_index(rm: Any) -> tuple[Path, str]:
    """Save ``rm``'s index into ``indexes/<digest>`` (whole or not at all)."""
    root = _index_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=root))
    try:
        rm.save(tmp / "index")
        digest = code_digest(tmp / "index") or ""
        target = root / digest[:32]
        if not target.exists():
            try:
                (tmp / "index").rename(target)
            except OSError:  # another process saved the same index first
                pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, digest


def bundle_retrievers(retrievers: Sequence[PackedRetriever], directory: Path) -> None:
    """Copy each packed index into the model's ``data/dspex/retrievers/`` directory."""
    for r in retrievers:
        if r.kind is None:
            continue
        source = Path(r.source)
        if code_digest(source) != r.sha256:
            raise UserError(
                f"The saved index of {r.path} at {source} changed or is gone since the "
                "program was packed; pack (log) the program again."
            )
        shutil.copytree(source, directory / r.manifest()["dir"], dirs_exist_ok=True)


def attach_retrievers(
    program: Module,
    directory: Path,
    manifest: Mapping[str, Any],
    *,
    embedder: Any = None,
    verify: bool = True,
) -> None:
    """Rebuild the retrievers a model's manifest lists and give each to its ``Retrieve``.

    Args:
        program: the program rebuilt from the model.
        directory: the model's ``data/dspex`` directory.
        manifest: its (verified) ``dspex.json``.
        embedder: the embedder for dense indexes; by default one built from the recorded
            model name, with this process's endpoint and key (environment variables).
        verify: check each index directory against its recorded sha256.

    Raises:
        ProgramIntegrityError: an index was edited, or the manifest names a retriever class
            or module path that is not allowed.
    """
    entries = manifest.get("retrievers") or []
    if not entries:
        return
    modules = dict(_all_retrieve_modules(program))
    for entry in entries:
        kind, path = entry.get("kind"), entry.get("path")
        if path not in modules or (kind is not None and kind not in _LOADABLE):
            raise ProgramIntegrityError(
                f"{directory}: the model names retriever {kind!r} at {path!r}, which this "
                "program cannot hold; nothing was loaded.",
                path=str(directory),
            )
        modules[path].k = check_k(entry.get("k", modules[path].k), f"{path}.k in {directory}")
        if kind is None:
            continue
        index = directory / RETRIEVERS_DIR / _dir_name(str(path))
        if verify and code_digest(index) != entry.get("sha256"):
            raise ProgramIntegrityError(
                f"{index}: the retriever's index does not match the model's manifest (files "
                "were edited after it was logged); nothing was loaded. Log the model again.",
                path=str(index),
            )
        modules[path].rm = _load_index(kind, _stable_copy(index), entry, embedder)


def _all_retrieve_modules(program: Module) -> list[tuple[str, Any]]:
    from dspex.modules._retrieve import Retrieve

    return [(n.removeprefix("self."), m) for n, m in program.named_sub_modules(Retrieve)]


def _stable_copy(index: Path) -> Path:
    """A copy under the dspex cache keyed by content: the model directory may be a
    temporary download that is gone once loading returns."""
    digest = code_digest(index) or ""
    target = _index_root() / digest[:32]
    if target.exists() and code_digest(target) != digest:
        # A cached copy edited (or half-copied) since: replace it rather than trust it.
        shutil.rmtree(target, ignore_errors=True)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copytree(index, tmp, dirs_exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process got there first
    return target


def _load_index(kind: str, index: Path, entry: Mapping[str, Any], embedder: Any) -> Any:
    import dspex.retrievers as retrievers

    cls = getattr(retrievers, kind)
    if kind != "Embeddings":
        return cls.from_saved(str(index))
    if embedder is None:
        model = entry.get("embedder")
        if not isinstance(model, str):
            raise UserError(
                "This model's retriever was built with an embedder dspex cannot rebuild from "
                "a name (a callable); pass one: dspex.mlflow.load_model(uri, embedder=...)."
            )
        if model.startswith("local/"):
            # A file must not choose what this process loads from disk or a hub.
            raise UserError(
                f"This model's retriever was built with the local embedder {model!r}; "
                "dspex does not load a local model a file names. Pass it yourself: "
                f"dspex.mlflow.load_model(uri, embedder=dspex.Embedder({model!r}))."
            )
        # The model name only: endpoint and key come from this process (its environment).
        embedder = retrievers.Embedder(model)
    return cls.from_saved(str(index), embedder)
