"""DSPy's saved-program JSON, read into and written from dspex's program state.

DSPy 3.x's ``program.save("p.json")`` writes one object per named predictor — its demos, its
signature's instructions and each field's ``prefix`` and ``description`` *by position*, and
its LM's settings — plus ``metadata.dependency_versions``. This module converts such an
object to the state :meth:`dspex.Module.load_state` reads (:func:`from_dspy`) and dspex's
state to that format (:func:`to_dspy`), so a program moves between the two libraries.

What never crosses: endpoints and credentials (``api_base``, ``base_url``, keys, headers —
the loading process decides where prompts go, as for dspex's own files), and DSPy's
pickled whole-program directories (``save_program=True``), which dspex does not read.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from dspex._redact import is_route_key
from dspex.errors import DataError

__all__ = ["DSPY_FORMAT_VERSION", "from_dspy", "is_dspy_state", "to_dspy"]

# The DSPy release whose format ``to_dspy`` writes (DSPy compares it to its own version and
# only warns on a mismatch).
DSPY_FORMAT_VERSION = "3.4.1"

# Keys of DSPy's LM state that describe DSPy's client, not the request.
_DSPY_LM_META = frozenset(
    {"_dspy_lm_class", "model_type", "finetuning_model", "launch_kwargs", "train_kwargs"}
    | {"provider", "callbacks", "use_developer_role", "model_list", "rollout_id"}
)
# Keys of a predictor's DSPy state that hold no state dspex keeps.
_DSPY_PREDICTOR_KEYS = frozenset({"traces", "train", "demos", "signature", "lm", "fields"})


def is_dspy_state(state: Mapping[str, Any]) -> bool:
    """Whether a saved program's top-level JSON object is in DSPy's format."""
    if "schema_version" in state or "predictors" in state:
        return False
    metadata = state.get("metadata")
    if isinstance(metadata, Mapping) and "dspy" in (metadata.get("dependency_versions") or {}):
        return True
    if isinstance(state.get("signature"), Mapping) and "demos" in state:
        return True  # a bare predictor: its state is the whole object
    entries = [v for k, v in state.items() if k != "metadata"]
    return bool(entries) and all(
        isinstance(v, Mapping) and "signature" in v and "demos" in v for v in entries
    )


def _default_prefix(name: str) -> str:
    """The prefix DSPy derives from a field name when none is given (``"Question:"``)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).split("_")
    return " ".join(w[:1].upper() + w[1:] for w in words if w) + ":"


def _is_default_prefix(prefix: str, name: str) -> bool:
    squash = re.sub(r"[\s_:]", "", prefix).lower()
    return squash == name.replace("_", "").lower()


def _lm_config(saved: Mapping[str, Any], where: str) -> dict[str, Any]:
    """DSPy's LM state as a dspex LM config: the model and request parameters only."""
    model = saved.get("model")
    if not isinstance(model, str) or not model:
        raise DataError(f"{where}: its LM state has no model name; re-save it with DSPy.")
    config: dict[str, Any] = {"model": model}
    kwargs: dict[str, Any] = {}
    for key, value in saved.items():
        if key == "model" or key in _DSPY_LM_META or is_route_key(key):
            continue
        if key in ("cache", "num_retries"):
            config[key] = value
        elif key == "kwargs" and isinstance(value, Mapping):  # an older DSPy nesting
            kwargs.update({k: v for k, v in value.items() if not is_route_key(str(k))})
        else:
            kwargs[key] = value
    config["kwargs"] = kwargs
    return config


def _by_predictor(state: Mapping[str, Any]) -> dict[str, Any]:
    """Each predictor's state by name; DSPy saves a bare predictor's state unnested, and
    names the predictor ``"self"``."""
    if isinstance(state.get("signature"), Mapping) and "demos" in state:
        return {"self": {k: v for k, v in state.items() if k != "metadata"}}
    return {k: v for k, v in state.items() if k != "metadata"}


def from_dspy(
    state: Mapping[str, Any], predictors: Iterable[tuple[str, Any]], *, path: str, program: str
) -> dict[str, Any]:
    """dspex program state (as :meth:`Module.dump_state` makes) from DSPy's saved JSON.

    Args:
        state: the file's top-level object.
        predictors: the loading program's ``named_predictors()``; DSPy records fields by
            position, so the names come from the program.
        path: the file, for messages.
        program: the loading program's ``module:qualname``.

    Raises:
        DataError: the file's predictors or fields do not match the program's.
    """
    mine = dict(predictors)
    saved = _by_predictor(state)
    if set(saved) != set(mine):
        raise DataError(
            f"load({path!r}): the DSPy program has predictors {sorted(saved)} but this "
            f"program has {sorted(mine)}. Load it into the same program structure it was "
            "saved from (predictor names are attribute paths, e.g. 'draft.predict')."
        )
    out: dict[str, Any] = {}
    for name, entry in saved.items():
        where = f"load({path!r}), predictor {name!r}"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("signature"), Mapping):
            raise DataError(f"{where}: not a DSPy predictor state (no 'signature' object).")
        fields = list(mine[name].signature.fields.values())
        saved_fields = entry["signature"].get("fields") or []
        if len(saved_fields) != len(fields):
            raise DataError(
                f"{where}: the file has {len(saved_fields)} fields but the predictor's "
                f"signature has {len(fields)} ({', '.join(f.name for f in fields)}). Load it "
                "into a program with the signature it was saved with."
            )
        converted = []
        for field, saved_field in zip(fields, saved_fields, strict=True):
            description = saved_field.get("description")
            prefix = saved_field.get("prefix")
            converted.append(
                {
                    "name": field.name,
                    # DSPy writes "${name}" for a field without a description.
                    "desc": field.desc
                    if description in (None, f"${{{field.name}}}")
                    else description,
                    "prefix": field.prefix
                    if prefix is None or _is_default_prefix(str(prefix), field.name)
                    else prefix,
                }
            )
        demos = entry.get("demos") or []
        if not isinstance(demos, list) or not all(isinstance(d, Mapping) for d in demos):
            raise DataError(f"{where}: 'demos' must be a list of objects.")
        lm = entry.get("lm")
        if lm is not None and not isinstance(lm, Mapping):
            raise DataError(f"{where}: 'lm' must be an object or null.")
        out[name] = {
            "signature": {
                "instructions": entry["signature"].get("instructions"),
                "fields": converted,
            },
            "demos": [dict(d) for d in demos],
            "lm": _lm_config(lm, where) if lm else None,
            "config": {},
        }
    from dspex.primitives._module import STATE_SCHEMA_VERSION

    return {"schema_version": STATE_SCHEMA_VERSION, "program": program, "predictors": out}


def _dspy_lm(config: Mapping[str, Any]) -> dict[str, Any]:
    """A dspex LM config as DSPy's LM state (no endpoint, no credentials)."""
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if not is_route_key(k)}
    return {
        "model": config["model"],
        "model_type": "chat",
        "cache": bool(config.get("cache", True)),
        "num_retries": int(config.get("num_retries", 3)),
        **kwargs,
        "finetuning_model": None,
        "launch_kwargs": {},
        "train_kwargs": {},
    }


def to_dspy(state: Mapping[str, Any], predictors: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """DSPy 3.4's saved-program JSON for dspex program state (:meth:`Module.dump_state`)."""
    out: dict[str, Any] = {}
    for name, predictor in predictors:
        entry = state["predictors"][name]
        fields = []
        for field in predictor.signature.fields.values():
            fields.append(
                {
                    "prefix": field.prefix or _default_prefix(field.name),
                    "description": field.desc or f"${{{field.name}}}",
                }
            )
        out[name] = {
            "traces": [],
            "train": [],
            "demos": entry["demos"],
            "signature": {"instructions": entry["signature"]["instructions"], "fields": fields},
            "lm": _dspy_lm(entry["lm"]) if entry.get("lm") else None,
        }
    if list(out) == ["self"]:  # a bare predictor: DSPy writes its state unnested
        out = dict(out["self"])
    out["metadata"] = {
        "dependency_versions": {
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "dspy": DSPY_FORMAT_VERSION,
        }
    }
    return out
