"""Prices per model, for ``Usage.cost``.

Prices registered with :func:`register_price` win. Otherwise the price comes from the cost
map that ships inside the litellm package, read as a JSON file so that pricing never imports
litellm itself (a multi-second import). Unknown models cost ``None``, never a guess.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

from dspex._jsonable import loads
from dspex.errors import UserError

__all__ = ["cost_of", "price_of", "register_price"]

_log = logging.getLogger("dspex.lm")

# (input, output) in dollars per token.
Price = tuple[float, float]

_lock = threading.Lock()
_registered: dict[str, Price] = {}
_memo: dict[str, Price | None] = {}
_litellm_map: dict[str, Price] | None = None


def register_price(model: str, input_per_million: float, output_per_million: float) -> None:
    """Set the price of a model, in dollars per million tokens; it overrides litellm's map.

    Example:
        >>> from dspex.lm import register_price
        >>> register_price("openai/my-finetune", 0.30, 1.20)
    """
    if input_per_million < 0 or output_per_million < 0:
        raise UserError(f"Prices must be >= 0, got {input_per_million}, {output_per_million}.")
    with _lock:
        _registered[model] = (input_per_million / 1e6, output_per_million / 1e6)
        _memo.clear()


def _load_litellm_map() -> dict[str, Price]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations)))
    path = path / "model_prices_and_context_window_backup.json"
    try:
        raw = loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        _log.debug("litellm cost map unreadable at %s: %s", path, exc)
        return {}
    prices: dict[str, Price] = {}
    for name, info in raw.items():
        if not isinstance(info, dict):
            continue
        inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
        if isinstance(inp, int | float) and isinstance(out, int | float):
            prices[name] = (float(inp), float(out))
    return prices


def _candidates(model: str) -> list[str]:
    # "openai/gpt-4o-mini" is listed as "gpt-4o-mini"; others keep the provider prefix.
    names = [model]
    if "/" in model:
        names.append(model.split("/", 1)[1])
    return names


def price_of(model: str) -> Price | None:
    """The (input, output) price per token of ``model``, or ``None`` when unknown."""
    try:
        return _memo[model]
    except KeyError:
        pass
    global _litellm_map
    with _lock:
        price = next((_registered[n] for n in _candidates(model) if n in _registered), None)
        if price is None:
            if _litellm_map is None:
                _litellm_map = _load_litellm_map()
            price = next((_litellm_map[n] for n in _candidates(model) if n in _litellm_map), None)
        _memo[model] = price
    return price


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Dollar cost of one call, or ``None`` when the model has no known price."""
    price = price_of(model)
    if price is None:
        return None
    return prompt_tokens * price[0] + completion_tokens * price[1]
