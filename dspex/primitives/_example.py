"""``Example``: one data point, a mutable record of named fields, as DSPy's is."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Self

from dspex.errors import DataError

__all__ = ["Example"]

# Fields whose names start with this are bookkeeping (DSPy's ``dspy_uuid``, ``dspy_split``):
# kept and copied, but left out of ``len``, ``keys()``, ``values()``, ``items()`` and ``repr``.
_HIDDEN_PREFIX = "dspy_"


class Example(MutableMapping[str, Any]):
    """A data point: named fields, some of which are marked as the program's inputs.

    Fields are read and written as attributes or items (``ex.answer``, ``ex["answer"] = ...``,
    ``del ex["answer"]``), as in DSPy. ``with_inputs``, ``copy``, ``without``, ``inputs`` and
    ``labels`` return new examples and leave this one as it is. A method name is always the
    method here (``ex.labels()`` works on a dataset with a ``labels`` column); read such a
    field as ``ex["labels"]``.

    Example:
        >>> ex = Example(question="2+2?", answer="4").with_inputs("question")
        >>> ex.inputs().question, ex.labels().answer
        ('2+2?', '4')
        >>> ex.answer = "four"
        >>> ex
        Example({'question': '2+2?', 'answer': 'four'}) (input_keys={'question'})
    """

    _store: dict[str, Any]
    _input_keys: frozenset[str] | None

    def __init__(self, base: Mapping[str, Any] | None = None, **fields: Any) -> None:
        store: dict[str, Any] = {}
        input_keys: frozenset[str] | None = None
        if isinstance(base, Example):
            store.update(base._store)
            input_keys = getattr(base, "_input_keys", None)
        elif base is not None:
            store.update(base)
        store.update(fields)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_input_keys", input_keys)

    # -- fields as attributes ------------------------------------------------------------
    def __getattr__(self, key: str) -> Any:
        # Only reached when normal lookup fails: methods and private attributes come first.
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._store[key]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no field {key!r}; fields: {sorted(self._store)}"
            ) from None

    def __setattr__(self, key: str, value: Any) -> None:
        # Private names and properties are object attributes; any other name is a field (a
        # field named like a method is stored as a field, never hiding the method).
        if key.startswith("_") or isinstance(getattr(type(self), key, None), property):
            object.__setattr__(self, key, value)
        else:
            self._store[key] = value

    def __delattr__(self, key: str) -> None:
        if not key.startswith("_") and key in self._store:
            del self._store[key]
        else:
            object.__delattr__(self, key)

    # -- fields as items -----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._store))

    def __len__(self) -> int:
        return sum(1 for k in self._store if not k.startswith(_HIDDEN_PREFIX))

    def __eq__(self, other: object) -> bool:
        # As in DSPy: the fields decide; which of them are inputs does not.
        return isinstance(other, Example) and self._store == other._store

    def __hash__(self) -> int:
        # By content, like DSPy's, but values need not be hashable (lists, dicts, models).
        return hash(tuple(sorted((k, repr(v)) for k, v in self._store.items())))

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._store.items() if not k.startswith(_HIDDEN_PREFIX)}
        keys = set(self._input_keys) if self._input_keys is not None else None
        return f"{type(self).__name__}({shown!r}) (input_keys={keys!r})"

    def keys(self, include_dspy: bool = False) -> list[str]:  # type: ignore[override]
        """Field names (those starting with ``dspy_`` only with ``include_dspy``)."""
        return [k for k in self._store if include_dspy or not k.startswith(_HIDDEN_PREFIX)]

    def values(self, include_dspy: bool = False) -> list[Any]:  # type: ignore[override]
        return [
            v for k, v in self._store.items() if include_dspy or not k.startswith(_HIDDEN_PREFIX)
        ]

    def items(self, include_dspy: bool = False) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [
            (k, v)
            for k, v in self._store.items()
            if include_dspy or not k.startswith(_HIDDEN_PREFIX)
        ]

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a new dict, values as they are (see :meth:`toDict` for DSPy's
        recursive conversion)."""
        return dict(self._store)

    def toDict(self) -> dict[str, Any]:
        """The fields as plain JSON-friendly values: nested examples, pydantic models, lists
        and dicts converted recursively, as DSPy's ``toDict`` does."""
        return {k: _plain(v) for k, v in self._store.items()}

    # -- copies --------------------------------------------------------------------------
    def _new(self, store: dict[str, Any], input_keys: frozenset[str] | None) -> Self:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)  # subclass state (a prediction's usage, ...)
        object.__setattr__(new, "_store", store)
        object.__setattr__(new, "_input_keys", input_keys)
        return new

    def __copy__(self) -> Self:
        return self._new(dict(self._store), self._input_keys)

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        import copy

        new = object.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            object.__setattr__(new, key, copy.deepcopy(value, memo))
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))

    def copy(self, **changes: Any) -> Self:
        """A copy with some fields changed or added."""
        return self._new({**self._store, **changes}, self._input_keys)

    def without(self, *keys: str) -> Self:
        """A copy without the given fields."""
        keep = {k: v for k, v in self._store.items() if k not in keys}
        ik = self._input_keys - set(keys) if self._input_keys is not None else None
        return self._new(keep, ik)

    def with_inputs(self, *keys: str) -> Self:
        """A copy whose input fields are ``keys``; the rest are labels.

        As in DSPy, a key need not be present: an example may leave out an optional input.
        """
        return self._new(dict(self._store), frozenset(keys))

    @property
    def input_keys(self) -> frozenset[str] | None:
        """The names declared by :meth:`with_inputs` (``None`` before it is called)."""
        return self._input_keys

    def inputs(self) -> Self:
        """The input fields only (``DataError``, a ``ValueError``, if ``with_inputs`` was never
        called)."""
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


def _plain(value: Any) -> Any:
    """DSPy's ``toDict`` conversion of one value."""
    to_dict = getattr(value, "toDict", None)
    if callable(to_dict):
        return to_dict()
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rebuild(cls: type[Example], state: dict[str, Any], *old: Any) -> Example:
    if old:  # pickled by dspex 0.1: (cls, store, input_keys)
        state = {"_store": dict(state), "_input_keys": old[0]}
    new = object.__new__(cls)
    for key, value in state.items():
        object.__setattr__(new, key, value)
    if "_input_keys" not in state:
        object.__setattr__(new, "_input_keys", None)
    return new
