"""``Prediction``: what a module returns, with every completion and the LM usage behind it."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, Sequence
from typing import Any

from dspex.errors import DataError
from dspex.primitives._example import Example
from dspex.primitives._usage import Usage

__all__ = ["Completions", "Prediction"]

# Attributes a field of the same name does not hide: ``keys`` is how Python's ``dict(pred)``
# and ``f(**pred)`` read a mapping; ``completions`` is hidden in DSPy too; ``usage`` is what
# evaluations add up. Read such a field as ``pred["usage"]``.
_NOT_SHADOWED = frozenset({"keys", "completions", "usage"})


class Completions:
    """The ``n`` completions of one call: ``completions.answer`` (or ``completions["answer"]``)
    lists every answer, ``completions[i]`` is the i-th as a :class:`Prediction`.

    Built from a list of dicts (one per completion) or a dict of equal-length lists, as in DSPy.
    """

    def __init__(
        self,
        list_or_dict: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        signature: Any = None,
    ) -> None:
        self.signature = signature
        if isinstance(list_or_dict, Mapping):
            columns = {k: list(v) for k, v in list_or_dict.items()}
            lengths = {len(v) for v in columns.values()}
            if len(lengths) > 1:
                raise DataError(
                    f"Completions from a dict need lists of one length; got lengths {lengths}."
                )
            n = lengths.pop() if lengths else 0
            items = [{k: v[i] for k, v in columns.items()} for i in range(n)]
        else:
            items = [dict(i) for i in list_or_dict]
        self._items: list[dict[str, Any]] = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return [i[key] for i in self._items if key in i]
        if not -len(self._items) <= key < len(self._items):
            raise IndexError(f"completion {key} of {len(self._items)}")
        return Prediction(self._items[key])

    def __iter__(self) -> Iterator[Prediction]:
        return (Prediction(i) for i in self._items)

    def __contains__(self, key: object) -> bool:
        return any(key in i for i in self._items)

    def __getattr__(self, key: str) -> list[Any]:
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in self:
            raise AttributeError(f"completions have no field {key!r}")
        return self[key]  # type: ignore[no-any-return]

    def items(self) -> ItemsView[str, list[Any]]:
        """``(field, [value per completion])`` pairs, as DSPy's ``Completions.items``."""
        names = dict.fromkeys(k for i in self._items for k in i)
        return {k: self[k] for k in names}.items()

    def __repr__(self) -> str:
        return f"Completions({self._items!r})"


class Prediction(Example):
    """A module's output: fields from the first completion, plus all ``completions``.

    A field is read as an attribute even where its name is also a method of ``Example``
    (an output named ``items`` or ``inputs`` reads as ``pred.items``); only ``keys``,
    ``completions`` and ``usage`` stay what they are (read such fields as ``pred["keys"]``).

    Like DSPy's, a prediction with a ``score`` field converts to ``float`` and compares and
    adds as its score.

    Example:
        >>> p = Prediction.from_completions([{"answer": "4"}, {"answer": "5"}])
        >>> p.answer, p.completions.answer
        ('4', ['4', '5'])
    """

    # Class-level defaults, so that a prediction built by DSPy-style code that skips
    # ``__init__`` (or unpickled from an older dspex) still has them.
    _completions: Completions | None = None
    _usage: Usage = Usage()
    _lm_usage: dict[str, Usage] | None = None

    def __init__(self, base: Mapping[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(base, **fields)
        object.__setattr__(self, "_input_keys", None)

    def __getattribute__(self, key: str) -> Any:
        if key[:1] != "_" and key not in _NOT_SHADOWED:
            store = object.__getattribute__(self, "_store")
            if key in store:
                return store[key]
        return object.__getattribute__(self, key)

    @classmethod
    def from_completions(
        cls,
        completions: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        usage: Usage | None = None,
        *,
        signature: Any = None,
    ) -> Prediction:
        """A prediction whose fields are the first completion's (DSPy's ``from_completions``,
        a list of dicts or a dict of lists), with the LM ``usage`` that produced them."""
        all_ = Completions(completions, signature=signature)
        pred = cls(all_._items[0] if all_._items else {})
        object.__setattr__(pred, "_completions", all_)
        object.__setattr__(pred, "_usage", usage or Usage())
        return pred

    @property
    def completions(self) -> Completions:
        """Every completion (this prediction alone when it was not built from several)."""
        return self._completions or Completions([Example.to_dict(self)])

    @property
    def usage(self) -> Usage:
        """LM usage of the calls that produced this prediction."""
        return self._usage

    def with_usage(self, usage: Usage, by_model: Mapping[str, Usage] | None = None) -> Prediction:
        """A copy that carries ``usage`` (and, optionally, that usage per model)."""
        new = Example.copy(self)
        object.__setattr__(new, "_usage", usage)
        if by_model is not None:
            object.__setattr__(new, "_lm_usage", dict(by_model))
        return new

    def get_lm_usage(self) -> dict[str, dict[str, Any]] | None:
        """LM usage per model, as DSPy's ``get_lm_usage()``: ``{model: {"prompt_tokens": ...,
        "completion_tokens": ..., "total_tokens": ..., ...}}``, or ``None`` when unknown."""
        lm_usage = self._lm_usage
        if not lm_usage:
            return None
        return {model: _usage_dict(u) for model, u in lm_usage.items()}

    def set_lm_usage(self, value: Mapping[str, Any] | None) -> None:
        """Set the per-model usage, as DSPy's ``set_lm_usage`` (dicts or ``Usage`` values)."""
        if value is None:
            object.__setattr__(self, "_lm_usage", None)
            return
        by_model = {m: u if isinstance(u, Usage) else _usage_from(u) for m, u in value.items()}
        total = sum(by_model.values(), Usage())
        object.__setattr__(self, "_lm_usage", by_model)
        object.__setattr__(self, "_usage", total)

    def __repr__(self) -> str:
        body = ",\n    ".join(f"{k}={v!r}" for k, v in Example.items(self))
        n = len(self._completions) if self._completions is not None else 1
        if n <= 1:
            return f"Prediction(\n    {body}\n)"
        return (
            f"Prediction(\n    {body},\n    completions=Completions(...)\n) "
            f"({n - 1} completions omitted)"
        )

    # -- a prediction with a ``score`` is a number ------------------------------------------
    def __float__(self) -> float:
        if "score" in self:
            return float(self["score"])
        raise DataError("Only a Prediction with a 'score' field converts to float.")

    def __add__(self, other: Any) -> float:
        return float(self) + _number(other, "addition")

    def __radd__(self, other: Any) -> float:
        return _number(other, "addition") + float(self)

    def __truediv__(self, other: Any) -> float:
        return float(self) / _number(other, "division")

    def __rtruediv__(self, other: Any) -> float:
        return _number(other, "division") / float(self)

    def __lt__(self, other: Any) -> bool:
        return float(self) < _number(other, "comparison")

    def __le__(self, other: Any) -> bool:
        return float(self) <= _number(other, "comparison")

    def __gt__(self, other: Any) -> bool:
        return float(self) > _number(other, "comparison")

    def __ge__(self, other: Any) -> bool:
        return float(self) >= _number(other, "comparison")


def _number(value: Any, what: str) -> float:
    if not isinstance(value, int | float | Prediction):
        raise TypeError(f"Unsupported type for {what}: {type(value)}")
    return float(value)


def _usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "calls": usage.calls,
        "cache_hits": usage.cache_hits,
        "cost": usage.cost,
    }


def _usage_from(value: Mapping[str, Any]) -> Usage:
    return Usage(
        calls=int(value.get("calls", 0) or 0),
        prompt_tokens=int(value.get("prompt_tokens", 0) or 0),
        completion_tokens=int(value.get("completion_tokens", 0) or 0),
        cost=value.get("cost"),
    )
