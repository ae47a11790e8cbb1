"""Flow parameters given in part, merged over a full set (a deployment's own parameters).

``prefect deployment run NAME --params '{"params": {"optimizer": "MIPROv2"}}'`` names one
field of one parameter; Prefect replaces the whole ``params`` with it, which then fails
validation. :func:`merge_params` puts such a part over the deployment's parameters instead:

- a field given replaces the default's, except a parameter group (a pydantic model: the
  ``optimize`` block, a dataset, the LM, the budget, tracking, promotion) or a mapping
  (``settings``, ``lm.kwargs``), which is merged the same way, key by key; ``null`` is the
  value ``None``, not a deletion;
- a group given with another identity replaces the default's whole, because its other keys
  described the old one: a dataset with another ``ref``, ``task`` or ``path``, an LM with
  another ``model`` or ``ref`` (its endpoint and credential references are not carried over);
- the optimizer's ``settings`` belong to it: given another ``optimizer``, the defaults'
  settings are dropped and only the settings given (if any) are used.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from dspex.optimize._params import DatasetSpec, LMSpec

__all__ = ["merge_params"]

# The fields that say *which* dataset or LM a group is.
_IDENTITY: dict[type[BaseModel], tuple[str, ...]] = {
    DatasetSpec: ("ref", "task", "path"),
    LMSpec: ("model", "ref"),
}


def _group(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    """The parameter model of field ``key`` (unwrapping ``X | None``), if it is one."""
    field = model.model_fields.get(key) if model is not None else None
    if field is None:
        return None
    annotation = field.annotation
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _other(group: type[BaseModel] | None, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether ``new`` names another dataset or LM than ``old``."""
    keys = _IDENTITY.get(group, ()) if group is not None else ()
    return any(k in new and new[k] != old.get(k) for k in keys)


def merge_params(
    model: type[BaseModel] | None, defaults: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, Any]:
    """``given`` over ``defaults``, as the module docstring says; both as JSON values.

    Example:
        >>> from dspex.optimize import OptimizeParams
        >>> defaults = {
        ...     "program": "cot:question -> answer",
        ...     "trainset": {"task": "arithmetic", "train_size": 50},
        ...     "optimizer": "BootstrapFewShotWithRandomSearch",
        ...     "settings": {"num_candidate_programs": 4},
        ... }
        >>> merge_params(OptimizeParams, defaults, {"optimizer": "MIPROv2",
        ...                                         "trainset": {"train_size": 20}})
        ... # doctest: +NORMALIZE_WHITESPACE
        {'program': 'cot:question -> answer', 'trainset': {'task': 'arithmetic', 'train_size': 20},
         'optimizer': 'MIPROv2'}
    """
    merged = dict(defaults)
    for key, value in given.items():
        old = merged.get(key)
        group = _group(model, key)
        if (
            isinstance(value, Mapping)
            and isinstance(old, Mapping)
            and not _other(group, old, value)
        ):
            merged[key] = merge_params(group, old, value)
        else:
            merged[key] = value
    fields = model.model_fields if model is not None else {}
    other = "optimizer" in given and given["optimizer"] != defaults.get("optimizer")
    if other and "settings" in fields:
        merged.pop("settings", None)  # another optimizer's settings
        if "settings" in given:
            merged["settings"] = given["settings"]
    return merged
