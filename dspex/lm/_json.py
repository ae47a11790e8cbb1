"""JSON on the LM hot path: the library's one rule (:mod:`dspex._jsonable`), orjson-backed."""

from __future__ import annotations

from dspex._jsonable import canonical_json as dumps_canonical
from dspex._jsonable import dumps, loads

__all__ = ["dumps", "dumps_canonical", "loads"]
