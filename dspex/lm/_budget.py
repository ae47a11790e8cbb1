"""``Budget``: caps on LM calls, tokens and cost, enforced before every LM call."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from dspex.errors import BudgetExceededError
from dspex.primitives._usage import Usage

__all__ = ["Budget"]


@dataclass
class _Spent:
    calls: int = 0
    tokens: int = 0
    cost: float = 0.0


class Budget:
    """Stops LM calls once a cap is reached; activate with ``dspex.context(budget=...)``.

    Cache hits are free and never count. A call that starts under the cap may finish over it
    (its tokens are unknown until it returns); the next call then raises
    ``BudgetExceededError``, which optimizers catch to stop cleanly with the best so far.

    Example:
        >>> import dspex
        >>> from dspex.lm import Budget
        >>> from dspex.testing import DummyLM
        >>> qa = dspex.Predict("q -> a", lm=DummyLM([{"a": "1"}, {"a": "2"}]))
        >>> with dspex.context(budget=Budget(max_calls=1)):
        ...     _ = qa(q="first")
        ...     try:
        ...         qa(q="second")
        ...     except dspex.errors.BudgetExceededError as e:
        ...         print(e.limit)
        max_calls
    """

    def __init__(
        self,
        *,
        max_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
    ) -> None:
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self._spent = _Spent()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise ``BudgetExceededError`` if any cap has been reached."""
        s = self._spent
        for limit, used, cap in (
            ("max_calls", s.calls, self.max_calls),
            ("max_tokens", s.tokens, self.max_tokens),
            ("max_cost", s.cost, self.max_cost),
        ):
            if cap is not None and used >= cap:
                raise BudgetExceededError(limit=limit, used=used, cap=cap)

    def charge(self, usage: Usage) -> None:
        """Count a finished call (cache hits are free)."""
        if usage.cache_hits >= usage.calls:
            return
        with self._lock:
            self._spent.calls += usage.calls - usage.cache_hits
            self._spent.tokens += usage.prompt_tokens + usage.completion_tokens
            self._spent.cost += usage.cost or 0.0

    @property
    def spent(self) -> dict[str, Any]:
        s = self._spent
        return {"calls": s.calls, "tokens": s.tokens, "cost": s.cost}

    @property
    def exhausted(self) -> bool:
        try:
            self.check()
        except BudgetExceededError:
            return True
        return False
