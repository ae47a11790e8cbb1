"""``Example``: one data point, immutable; methods return copies."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Self

from dspex.errors import DataError

__all__ = ["Example"]


class Example(Mapping[str, Any]):
    """A data point: named fields, some of which are marked as the program's inputs.

    Examples are immutable: ``with_inputs``, ``copy`` and ``without`` return new ones.

    Example:
        >>> ex = Example(question="2+2?", answer="4").with_inputs("question")
        >>> ex.inputs().question, ex.labels().answer
        ('2+2?', '4')
    """

    __slots__ = ("_input_keys", "_store")
    _input_keys: frozenset[str] | None
    _store: dict[str, Any]

    def __init__(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        store: dict[str, Any] = {}
        input_keys: frozenset[str] | None = None
        if isinstance(base, Example):
            store.update(base._store)
            input_keys = base._input_keys
        elif base is not None:
            store.update(base)
        store.update(fields)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_input_keys", input_keys)

    # -- mapping-like access -------------------------------------------------------------
    def __getattr__(self, key: str) -> Any:
        if (key.startswith("__") and key.endswith("__")) or key in Example.__slots__:
            raise AttributeError(key)
        try:
            return self._store[key]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no field {key!r}; fields: {sorted(self._store)}"
            ) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(
            f"{type(self).__name__} is immutable; use ex.copy({key}=...) to get a changed copy."
        )

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Example)
            and self._store == other._store
            and self._input_keys == other._input_keys
        )

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._store.items())))

    def __repr__(self) -> str:
        inputs = f", input_keys={sorted(self._input_keys)}" if self._input_keys else ""
        return f"{type(self).__name__}({self._store!r}{inputs})"

    def keys(self) -> KeysView[str]:
        return self._store.keys()

    def values(self) -> ValuesView[Any]:
        return self._store.values()

    def items(self) -> ItemsView[str, Any]:
        return self._store.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._store)

    toDict = to_dict

    # -- copies --------------------------------------------------------------------------
    def _new(self, store: dict[str, Any], input_keys: frozenset[str] | None) -> Self:
        new = object.__new__(type(self))
        object.__setattr__(new, "_store", store)
        object.__setattr__(new, "_input_keys", input_keys)
        for slot in getattr(type(self), "__slots__", ()):
            if slot not in ("_store", "_input_keys") and hasattr(self, slot):
                object.__setattr__(new, slot, getattr(self, slot))
        return new

    def __copy__(self) -> Self:
        return self._new(dict(self._store), self._input_keys)

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        import copy

        return self._new(copy.deepcopy(self._store, memo), self._input_keys)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._store, self._input_keys))

    def copy(self, **changes: Any) -> Self:
        """A copy with some fields changed or added."""
        return self._new({**self._store, **changes}, self._input_keys)

    def without(self, *keys: str) -> Self:
        """A copy without the given fields."""
        keep = {k: v for k, v in self._store.items() if k not in keys}
        ik = self._input_keys - set(keys) if self._input_keys is not None else None
        return self._new(keep, ik)

    def with_inputs(self, *keys: str) -> Self:
        """A copy whose input fields are ``keys``; the rest are labels."""
        missing = [k for k in keys if k not in self._store]
        if missing:
            raise DataError(
                f"with_inputs{keys}: the example has no field(s) {missing}; "
                f"its fields are {sorted(self._store)}."
            )
        return self._new(dict(self._store), frozenset(keys))

    @property
    def input_keys(self) -> frozenset[str] | None:
        return self._input_keys

    def inputs(self) -> Self:
        """The input fields only (raises if ``with_inputs`` was never called)."""
        if self._input_keys is None:
            raise DataError(
                "This example has no declared inputs; call ex.with_inputs('question', ...) "
                "(dataset loaders do it for you with input_keys=...)."
            )
        return self._new(
            {k: v for k, v in self._store.items() if k in self._input_keys}, self._input_keys
        )

    def labels(self) -> Self:
        """The non-input fields only."""
        ik = self._input_keys or frozenset()
        return self._new({k: v for k, v in self._store.items() if k not in ik}, None)

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], input_keys: Iterable[str]
    ) -> list[Example]:
        """Build examples from dicts, all with the same input keys."""
        keys = tuple(input_keys)
        return [cls(r).with_inputs(*keys) for r in records]


def _rebuild(
    cls: type[Example], store: dict[str, Any], input_keys: frozenset[str] | None
) -> Example:
    new = cls(store)
    object.__setattr__(new, "_input_keys", input_keys)
    return new
