"""Every error dspex raises.

The hierarchy::

    DspexError                      root: catch this to catch everything dspex raises
    ├── UserError                   a mistake in how dspex is called; fix the call, do not retry
    │   │                           (also a ``ValueError``, as DSPy raises for these)
    │   ├── SignatureError          an invalid signature (raised when it is defined; also a
    │   │                           ``TypeError``, which DSPy raises for a field without
    │   │                           ``InputField``/``OutputField``)
    │   ├── ConfigurationError      missing or contradictory settings (no LM configured, ...)
    │   │   └── UnknownSettingError  a setting or argument that does not exist (did you mean ...?);
    │   │                           also a ``TypeError``, as an unexpected keyword argument is
    │   ├── DataError               data that does not fit: a dataset, an example, a saved file
    │   │   └── ProgramIntegrityError  a saved program that does not match its sha256 manifest
    │   └── MetricError             a metric returned NaN, a non-number, or an out-of-range value
    ├── ParseError                  the LM's output could not be parsed into the declared fields,
    │   │                           or was cut off at the token limit (``truncated``)
    │   └── AdapterParseError       DSPy's name and arguments: what an adapter raises
    ├── LMError                     the LM call failed; ``retryable`` says whether to try again
    │   ├── LMRateLimitError        HTTP 429 (retryable, honours ``retry_after``)
    │   ├── LMServerError           HTTP 5xx or a dropped connection (retryable)
    │   ├── LMTimeoutError          no answer in time (retryable)
    │   ├── LMAuthError             HTTP 401/403: the key is missing or wrong (not retryable)
    │   ├── LMBadRequestError       HTTP 4xx the provider refused (not retryable)
    │   └── ContextWindowExceededError  the prompt is too long for the model (not retryable)
    ├── RetrievalError              a retriever's backend failed: unreachable, timed out, or an
    │                               answer outside its protocol (``retryable`` says which)
    ├── EvaluationError             an evaluation stopped, e.g. it reached ``max_errors``
    ├── BudgetExceededError         a run reached its cap on LM calls, tokens or cost
    └── ScriptExhaustedError        a scripted test LM ran out of answers

User mistakes also subclass the builtin that DSPy raises for the same mistake, so the
``except ValueError`` / ``except TypeError`` clauses of code written for DSPy keep working
(the pattern of Prefect's ``ParameterBindError(TypeError, PrefectException)``).

Messages say what to do next. They never contain secrets: LM errors pass provider text
through :func:`dspex._redact.redact_text` before it reaches a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AdapterParseError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContextWindowExceededError",
    "DataError",
    "DspexError",
    "EvaluationError",
    "LMAuthError",
    "LMBadRequestError",
    "LMError",
    "LMRateLimitError",
    "LMServerError",
    "LMTimeoutError",
    "MetricError",
    "ParseError",
    "ProgramIntegrityError",
    "RetrievalError",
    "ScriptExhaustedError",
    "SignatureError",
    "UnknownSettingError",
    "UserError",
    "lm_error_from_status",
]


class DspexError(Exception):
    """Root of every error dspex raises."""


class UserError(DspexError, ValueError):
    """dspex was called in a way that cannot work; the message says how to fix the call.

    Also a ``ValueError``: DSPy raises ``ValueError`` for these mistakes (no LM configured,
    positional arguments to a predictor, ``inputs()`` before ``with_inputs``...).
    """


class SignatureError(UserError, TypeError):
    """A signature is invalid: no outputs, a bad field name, an unknown type.

    Both a ``ValueError`` and a ``TypeError``, the two builtins DSPy raises for an invalid
    signature (a string it cannot parse; a field declared without ``InputField``).
    """


class ConfigurationError(UserError):
    """Settings are missing or contradictory, e.g. no LM is configured."""


class UnknownSettingError(ConfigurationError, TypeError):
    """A setting that does not exist (a typo, most often); the message names the closest valid
    one. Also a ``TypeError``, as Python's (and DSPy's) unexpected keyword argument is, so code
    that catches that keeps working."""


class DataError(UserError):
    """Data does not fit: a dataset or example, or a file that is not what it should be."""

    def __init__(self, message: str, *, row_ids: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.row_ids = list(row_ids)


class ProgramIntegrityError(DataError):
    """A saved program does not match its sha256 manifest (it was edited or damaged after
    ``save``), or has no manifest. Nothing of it was loaded.

    Attributes:
        path: the file.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ParseError(DspexError):
    """The LM's answer could not be parsed or validated into the signature's output fields.

    Attributes:
        field: the output field that failed (``None`` when the whole answer was unreadable).
        reason: what was wrong (a missing section, a validation failure, bad JSON).
        raw: the raw text of the first attempt, which is usually the informative one.
        fallback_raw: the raw text of the re-ask, when there was one.
        truncated: the answer was cut off at the token limit (finish reason ``"length"``);
            such an answer is never accepted, cached or re-asked under the same limit.
        model: the model that answered, when known.
        max_tokens: the token limit the request set (``None``: the provider's default).
    """

    def __init__(
        self,
        *,
        signature: str,
        field: str | None,
        reason: str,
        raw: str,
        adapter: str,
        fallback_raw: str | None = None,
        truncated: bool = False,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.signature = signature
        self.field = field
        self.reason = reason
        self.raw = raw
        self.adapter = adapter
        self.fallback_raw = fallback_raw
        self.truncated = truncated
        self.model = model
        self.max_tokens = max_tokens
        where = f"field {field!r}" if field else "the answer"
        shown = raw if len(raw) <= 2000 else raw[:2000] + f"... [{len(raw) - 2000} more chars]"
        msg = (
            f"{adapter} could not parse {where} of signature {signature}: {reason}\n"
            f"Raw text of the first attempt:\n{shown}"
        )
        if fallback_raw is not None:
            msg += "\n(A re-ask in JSON mode failed too.)"
        if truncated:
            limit = f"max_tokens={max_tokens}" if max_tokens else "its default token limit"
            msg += (
                f"\nWhat to do: {model or 'the model'} stopped at {limit} before the answer was "
                "complete. Raise the limit (dspex.LM(..., max_tokens=...) or "
                "Predict(..., max_tokens=...)) or ask for a shorter answer. Truncated answers "
                "are never cached, and not re-asked under the same limit."
            )
        else:
            msg += (
                "\nWhat to do: loosen the field's type or constraints, add a `desc` that shows "
                "the expected format, or use a more capable model."
            )
        super().__init__(msg)


class AdapterParseError(ParseError):
    """An adapter could not parse an LM response; DSPy's ``AdapterParseError``, arguments included.

    Every parse failure dspex raises is one, so ``except AdapterParseError`` (DSPy's clause) and
    ``except dspex.ParseError`` both catch it. What went wrong underneath (a pydantic
    ``ValidationError``, a ``JSONDecodeError``) is its ``__cause__``.

    Attributes:
        adapter_name: the adapter that failed (``"ChatAdapter"``, ``"JSONAdapter"``).
        signature: the signature class whose output fields were expected.
        lm_response: the raw completion text (also ``raw``).
        parsed_result: the fields parsed before the failure, when any.
    """

    def __init__(
        self,
        adapter_name: str,
        signature: Any,
        lm_response: str,
        message: str | None = None,
        parsed_result: Mapping[str, Any] | None = None,
        *,
        field: str | None = None,
        fallback_raw: str | None = None,
        truncated: bool = False,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> None:
        expected = list(getattr(signature, "output_fields", {}) or {})
        if message is None:
            got = list(parsed_result or {})
            missing = [n for n in expected if n not in got]
            message = f"the answer has no value for field(s) {missing}" if missing else "unknown"
        name = getattr(signature, "__name__", None)
        short = getattr(signature, "signature", None)
        super().__init__(
            signature=f"{name}({short})" if name and isinstance(short, str) else str(signature),
            field=field,
            reason=message,
            raw=lm_response,
            adapter=adapter_name,
            fallback_raw=fallback_raw,
            truncated=truncated,
            model=model,
            max_tokens=max_tokens,
        )
        self.signature: Any = signature  # the class, as in DSPy
        self.adapter_name = adapter_name
        self.lm_response = lm_response
        self.parsed_result = dict(parsed_result) if parsed_result is not None else None


class LMError(DspexError):
    """An LM call failed.

    Attributes:
        status: the HTTP status, when there was one.
        retryable: whether the same request may succeed later.
        retry_after: seconds the provider asked us to wait, when it said.
        model: the model that was called.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.model = model


class LMRateLimitError(LMError):
    """HTTP 429: the provider asks us to slow down."""

    retryable = True


class LMServerError(LMError):
    """HTTP 5xx or a dropped connection: a provider-side failure."""

    retryable = True


class LMTimeoutError(LMError):
    """The provider did not answer within the timeout."""

    retryable = True


class LMAuthError(LMError):
    """HTTP 401/403: the API key is missing, wrong or lacks access."""


class LMBadRequestError(LMError):
    """The provider refused the request as malformed (HTTP 400/404/422)."""


class ContextWindowExceededError(LMBadRequestError):
    """The prompt does not fit the model's context window."""


class MetricError(UserError, TypeError):
    """A metric returned something that is not a score (NaN, a non-number, or a value outside
    [0, 1] from a metric annotated ``-> bool``), or raised a programming error (``TypeError``,
    ``AttributeError``, ``KeyError``: its ``__cause__``), which stops an optimizer or
    evaluation instead of failing every row. Also a ``TypeError``/``ValueError``, which is
    what DSPy code may catch around a broken metric.

    Attributes:
        row_id: the example whose score was bad.
        value: what the metric returned.
    """

    def __init__(self, message: str, *, row_id: Any, value: Any) -> None:
        super().__init__(message)
        self.row_id = row_id
        self.value = value


class RetrievalError(DspexError):
    """A retriever's backend failed: a search server or vector database was unreachable, did
    not answer in time, or answered something that is not its protocol.

    Attributes:
        status: the HTTP status, when there was one.
        retryable: whether the same search may succeed later (a dropped connection, a
            timeout, a 5xx), as ``LMError.retryable``.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class EvaluationError(DspexError):
    """An evaluation stopped before the end, e.g. because it reached ``max_errors``.

    The message names the failing rows by id and error type only, never their contents.

    Attributes:
        failures: ``(row_id, error_type, message)`` per failed row; messages are redacted.
        scores: row id -> score of every example scored before the evaluation stopped.
    """

    def __init__(
        self,
        message: str,
        *,
        failures: Sequence[tuple[Any, str, str]] = (),
        scores: Mapping[Any, float] | None = None,
    ) -> None:
        super().__init__(message)
        self.failures = list(failures)
        self.scores = dict(scores or {})

    @property
    def row_ids(self) -> list[Any]:
        """The ids of the failed rows."""
        return [row_id for row_id, _, _ in self.failures]

    @property
    def error_types(self) -> dict[Any, str]:
        """Row id -> the name of the exception that row raised."""
        return {row_id: kind for row_id, kind, _ in self.failures}


class BudgetExceededError(DspexError):
    """A cap on LM calls, tokens or cost was reached; no further LM call is made."""

    def __init__(self, *, limit: str, used: float, cap: float) -> None:
        super().__init__(
            f"LM budget reached: {limit}={cap:g} (used {used:g}). Raise the cap or narrow the "
            "run; optimizers stop cleanly with the best program so far."
        )
        self.limit = limit
        self.used = used
        self.cap = cap


class ScriptExhaustedError(DspexError):
    """A scripted test LM (``dspex.testing.DummyLM``) was asked more than it was scripted for."""


_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "too many tokens")


def lm_error_from_status(
    status: int,
    body: str,
    *,
    model: str | None,
    retry_after: float | None = None,
) -> LMError:
    """Build the typed error for an HTTP status; the one place these messages are made.

    ``body`` must already be redacted by the caller.
    """
    snippet = body if len(body) <= 500 else body[:500] + "..."
    where = f"{model}: " if model else ""
    if status == 429:
        wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        return LMRateLimitError(
            f"{where}rate limited (HTTP 429){wait}. Lower concurrency or raise num_retries. "
            f"Provider said: {snippet}",
            status=status,
            retry_after=retry_after,
            model=model,
        )
    if status in (401, 403):
        return LMAuthError(
            f"{where}authentication failed (HTTP {status}). Check the API key passed to "
            f"dspex.LM(..., api_key=...) or the provider's environment variable. "
            f"Provider said: {snippet}",
            status=status,
            model=model,
        )
    if status >= 500:
        return LMServerError(
            f"{where}provider error (HTTP {status}); retried requests may succeed. "
            f"Provider said: {snippet}",
            status=status,
            retry_after=retry_after,
            model=model,
        )
    if any(h in body.lower() for h in _CONTEXT_HINTS):
        return ContextWindowExceededError(
            f"{where}the prompt exceeds the model's context window. Use fewer or shorter demos, "
            f"or a model with a longer context. Provider said: {snippet}",
            status=status,
            model=model,
        )
    return LMBadRequestError(
        f"{where}request refused (HTTP {status}). Provider said: {snippet}",
        status=status,
        model=model,
    )
