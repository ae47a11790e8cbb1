"""Dataset tasks: load and validate, returning a fingerprint that later cache keys use."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dspex._redact import redacting
from dspex.errors import DataError
from dspex.optimize import DatasetSpec, dataset_fingerprint

__all__ = ["load_dataset"]


@task(name="load-dataset", cache_policy=NO_CACHE)
@redacting  # what it raises becomes the task's state message
def load_dataset(spec: DatasetSpec, role: str) -> dict[str, Any]:
    """Load a dataset spec, check every row declares inputs, and fingerprint it."""
    examples = spec.load()
    if not examples:
        raise DataError(f"The {role} is empty; give it at least one example.")
    missing = [i for i, ex in enumerate(examples) if ex.input_keys is None]
    if missing:
        raise DataError(
            f"{len(missing)} {role} row(s) declare no inputs (rows {missing[:20]}); use "
            "Example(...).with_inputs(...) or the loader's input_keys=.",
            row_ids=missing,
        )
    return {
        "fingerprint": dataset_fingerprint(examples),
        "n": len(examples),
        "input_keys": sorted(examples[0].input_keys or ()),
    }
