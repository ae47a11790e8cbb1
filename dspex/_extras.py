"""Optional extras, imported only when used: the finetune extra (torch, transformers, trl, peft,
tokenizers) and the device it runs on."""

from __future__ import annotations

import importlib
from typing import Any

from dspex.errors import ConfigurationError

__all__ = ["INSTALL_HINT", "require"]

INSTALL_HINT = (
    "pip install 'dspex[finetune]' (on a CPU-only machine, pin the CPU build of PyTorch first: "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)"
)


def require(*modules: str) -> list[Any]:
    """Import ``modules`` or raise a ``ConfigurationError`` that says how to install them."""
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as e:
            raise ConfigurationError(
                f"Finetuning needs {name!r}, which is not installed ({e}). Install it with: "
                f"{INSTALL_HINT}."
            ) from None
    return loaded


def device(preferred: str | None = None) -> str:
    """``preferred`` if given, else ``cuda`` when a GPU is present, else ``mps``, else
    ``cpu``."""
    if preferred:
        return preferred
    (torch,) = require("torch")
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
