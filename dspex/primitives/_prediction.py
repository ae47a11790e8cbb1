"""``Prediction``: what a module returns, with every completion and the LM usage behind it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dspex.primitives._example import Example
from dspex.primitives._usage import Usage

__all__ = ["Completions", "Prediction"]


class Completions:
    """The ``n`` completions of one call; ``completions.answer`` lists every answer."""

    __slots__ = ("_items",)

    def __init__(self, items: Sequence[Mapping[str, Any]]) -> None:
        self._items = [dict(i) for i in items]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Prediction:
        return Prediction(self._items[i])

    def __iter__(self) -> Iterator[Prediction]:
        return (Prediction(i) for i in self._items)

    def __getattr__(self, key: str) -> list[Any]:
        if key.startswith("__"):
            raise AttributeError(key)
        if self._items and key not in self._items[0]:
            raise AttributeError(f"completions have no field {key!r}")
        return [i[key] for i in self._items]

    def __repr__(self) -> str:
        return f"Completions({self._items!r})"


class Prediction(Example):
    """A module's output: fields from the first completion, plus all ``completions``.

    Example:
        >>> p = Prediction.from_completions([{"answer": "4"}, {"answer": "5"}])
        >>> p.answer, p.completions.answer
        ('4', ['4', '5'])
    """

    __slots__ = ("_completions", "_usage")
    _usage: Usage

    def __init__(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__(base, **fields)
        object.__setattr__(self, "_completions", None)
        object.__setattr__(self, "_usage", Usage())

    @classmethod
    def from_completions(
        cls, completions: Sequence[Mapping[str, Any]], usage: Usage | None = None
    ) -> Prediction:
        pred = cls(completions[0] if completions else {})
        object.__setattr__(pred, "_completions", Completions(completions))
        object.__setattr__(pred, "_usage", usage or Usage())
        return pred

    @property
    def completions(self) -> Completions:
        return self._completions or Completions([self.to_dict()])

    @property
    def usage(self) -> Usage:
        """LM usage of the calls that produced this prediction."""
        return self._usage

    def with_usage(self, usage: Usage) -> Prediction:
        new = self.copy()
        object.__setattr__(new, "_usage", usage)
        return new

    def __float__(self) -> float:
        if "score" in self:
            return float(self["score"])
        raise TypeError("Only a Prediction with a 'score' field converts to float.")
