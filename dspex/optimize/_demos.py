"""Demo sets and fingerprints: the values optimizer steps pass between each other.

A :class:`DemoSet` maps each predictor's name to its demos as plain JSON-able dicts, so it can
be a Prefect task result persisted as JSON and a cache-key input. Fingerprints are stable
hashes of programs and datasets across processes, which is what makes a re-run resume.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspex._jsonable import canonical_json, dumps, loads
from dspex._settings import current
from dspex.errors import DataError
from dspex.modules import Retrieve
from dspex.primitives import Example, Module
from dspex.retrievers._base import Retriever, retriever_fingerprint

__all__ = [
    "DemoSet",
    "apply_demos",
    "dataset_fingerprint",
    "labeled_demos",
    "program_fingerprint",
    "stable_json",
]


def stable_json(value: Any) -> str:
    """The canonical JSON form (:func:`dspex._jsonable.canonical_json`) as text, for hashing."""
    return canonical_json(value).decode()


def to_jsonable(value: Any) -> Any:
    """``value`` with pydantic models, enums and Examples turned into plain JSON values."""
    return loads(dumps(value))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_fingerprint(examples: Sequence[Example]) -> str:
    """A stable hash of the examples' fields and declared inputs, in order."""
    rows = [[ex.to_dict(), sorted(ex.input_keys or ())] for ex in examples]
    return _digest(stable_json(rows))


def program_fingerprint(program: Module) -> str:
    """A stable hash of a program's class, learnable state (instructions, demos, LM) and
    the retrievers it reads from.

    A retriever is a resource, not state (a rebuilt index leaves ``dump_state()`` as it
    was), but what the program returns depends on it: each retriever's
    :meth:`~dspex.retrievers.Retriever.fingerprint` (corpus, embedder model, settings) is
    folded in, so a run over a rebuilt index neither resumes nor reuses the cached results
    of a run over the old one.
    """
    state = program.dump_state()
    state.pop("dspex_version", None)
    retrievers = retriever_fingerprints(program)
    if retrievers:
        state["retrievers"] = retrievers
    return _digest(stable_json(state))


def retriever_fingerprints(program: Module) -> dict[str, str]:
    """Module path (``self.retrieve.rm``) → fingerprint of each retriever the program holds.

    A ``Retrieve`` without its own ``rm`` reads the context's (``dspex.configure(rm=...)``):
    that one counts under ``<path>.rm@context`` when one is configured where the
    fingerprint is taken (``compile()``'s caller, whose context the flow's program reference
    is made in). Other modules' retriever attributes (``self.search = BM25(...)``) count too.
    """
    found: dict[str, str] = {}
    for path, module in program.named_sub_modules():
        for name, value in vars(module).items():
            if isinstance(value, Retriever):
                found[f"{path}.{name}"] = value.fingerprint()
        if isinstance(module, Retrieve):
            if module.rm is not None and not isinstance(module.rm, Retriever):
                found[f"{path}.rm"] = retriever_fingerprint(module.rm)
            elif module.rm is None and current().rm is not None:
                found[f"{path}.rm@context"] = retriever_fingerprint(current().rm)
    return found


@dataclass(frozen=True)
class DemoSet:
    """Demos per predictor name, plus where they came from.

    Attributes:
        demos: predictor name → demo dicts (input and output fields).
        label: a short description (``zero-shot``, ``labeled``, ``bootstrap seed=3``...).
        stats: counts such as examples tried and bootstrapped.
    """

    demos: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    label: str = ""
    stats: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "demos": {k: [dict(d) for d in v] for k, v in self.demos.items()},
            "label": self.label,
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DemoSet:
        demos = {k: tuple(dict(d) for d in v) for k, v in data.get("demos", {}).items()}
        return cls(demos=demos, label=data.get("label", ""), stats=dict(data.get("stats", {})))

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.demos.values())


def apply_demos(program: Module, demoset: DemoSet) -> Module:
    """A copy of ``program`` whose predictors carry the demo set's demos (others: none)."""
    new = program.deepcopy()
    names = dict(new.named_predictors())
    unknown = sorted(set(demoset.demos) - set(names))
    if unknown:
        raise DataError(
            f"Demo set has demos for predictors {unknown} that the program does not have "
            f"(it has {sorted(names)})."
        )
    for name, predictor in names.items():
        inputs = list(predictor.signature.input_fields)
        predictor.demos = [
            Example(d).with_inputs(*[k for k in inputs if k in d])
            for d in demoset.demos.get(name, ())
        ]
    return new


def labeled_demos(
    program: Module, trainset: Sequence[Example], k: int, *, seed: int = 0, label: str = ""
) -> DemoSet:
    """``k`` training examples (a seeded sample) as demos for every predictor."""
    rng = random.Random(seed)
    chosen = rng.sample(list(trainset), min(k, len(trainset)))
    rows = tuple(to_jsonable(ex.to_dict()) for ex in chosen)
    names = [name for name, _ in program.named_predictors()]
    return DemoSet(
        demos={name: rows for name in names},
        label=label or f"labeled k={len(rows)}",
        stats={"labeled": len(rows)},
    )
