"""Types a signature can declare that adapters render specially: ``History``."""

from __future__ import annotations

from typing import Any

import pydantic

__all__ = ["History"]


class History(pydantic.BaseModel):
    """The conversation so far, for a signature input of this type (DSPy's ``dspy.History``).

    Each message is a dict keyed by the signature's field names. The adapter renders every
    message as a user turn (its input fields) and an assistant turn (its output fields), between
    the demos and the current inputs, and leaves the history field out of the last message.

    Example:
        >>> import dspex
        >>> class Chat(dspex.Signature):
        ...     question: str = dspex.InputField()
        ...     history: dspex.History = dspex.InputField()
        ...     answer: str = dspex.OutputField()
        >>> history = dspex.History(messages=[{"question": "2+2?", "answer": "4"}])
        >>> inputs = {"question": "And 3+3?", "history": history}
        >>> msgs = dspex.ChatAdapter().format(Chat, [], inputs)
        >>> [m["role"] for m in msgs]
        ['system', 'user', 'assistant', 'user']
    """

    messages: list[dict[str, Any]]

    model_config = pydantic.ConfigDict(
        frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )
