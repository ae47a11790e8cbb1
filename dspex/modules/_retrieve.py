"""``Retrieve``: DSPy's retrieval module, over the configured retriever (``rm``)."""

from __future__ import annotations

from typing import Any

from dspex._settings import current
from dspex.errors import ConfigurationError, UserError
from dspex.primitives import Module, Prediction
from dspex.retrievers._base import CallableRetriever, Retriever, check_k

__all__ = ["Retrieve"]


class Retrieve(Module):
    """Retrieve the top ``k`` passages for a query with the retriever in effect.

    The retriever is ``rm`` if given, else the context's (``dspex.configure(rm=...)`` or
    ``with dspex.context(rm=...)``), as DSPy's ``Retrieve`` uses ``dspy.settings.rm``. It may
    be any :class:`dspex.retrievers.Retriever` or a DSPy-style callable ``rm(query, k=k)``.

    Args:
        k: passages per call, unless the call says otherwise.
        callbacks: accepted for DSPy compatibility; use ``dspex.context(callbacks=...)``.
        rm: this module's own retriever (overrides the context's).

    Example:
        >>> import dspex
        >>> from dspex.retrievers import CallableRetriever
        >>> rm = CallableRetriever(lambda query, k: ["Paris is in France.", "Rome"][:k])
        >>> with dspex.context(rm=rm):
        ...     dspex.Retrieve(k=1)(query="Where is Paris?").passages
        ['Paris is in France.']
    """

    name = "Search"
    input_variable = "query"
    desc = (
        "takes a search query and returns one or more potentially relevant passages from a corpus"
    )

    def __init__(self, k: int = 3, callbacks: Any = None, *, rm: Any = None) -> None:
        super().__init__()
        self.k = check_k(k)
        self.callbacks = list(callbacks or [])
        self.rm = rm

    def _retriever(self, kwargs: dict[str, Any]) -> Retriever:
        rm = self.rm if self.rm is not None else current().rm
        if rm is None:
            raise ConfigurationError(
                "Retrieve has no retriever. Pass one (dspex.Retrieve(k, rm=retriever)), or call "
                "dspex.configure(rm=retriever) once, or wrap the call in "
                "`with dspex.context(rm=retriever):` (retriever: e.g. dspex.retrievers.BM25)."
            )
        if isinstance(rm, Retriever):
            if kwargs:
                raise UserError(
                    f"Retrieve got extra arguments {sorted(kwargs)} that {type(rm).__name__} "
                    "does not take; pass only query and k."
                )
            return rm
        return CallableRetriever(rm, **kwargs)

    # DSPy's signature (query first, positional or keyword), narrower than Module's **inputs.
    def forward(self, query: str, k: int | None = None, **kwargs: Any) -> Prediction:  # type: ignore[override]
        """``Prediction(passages=[texts])``, best first."""
        k = self.k if k is None else check_k(k)
        passages = self._retriever(kwargs).search(query, k)
        return Prediction(passages=[p.text for p in passages])

    async def aforward(  # type: ignore[override]
        self, query: str, k: int | None = None, **kwargs: Any
    ) -> Prediction:
        k = self.k if k is None else check_k(k)
        passages = await self._retriever(kwargs).asearch(query, k)
        return Prediction(passages=[p.text for p in passages])

    def reset(self) -> None:
        """Nothing is learned (DSPy's ``Retrieve.reset``)."""

    def __repr__(self) -> str:
        return f"Retrieve(k={self.k})"
