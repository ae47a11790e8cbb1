"""The one redaction function: secrets never reach history, saved programs, traces or errors.

Redaction works two ways: by key name (anything that looks like a credential is dropped from
mappings) and by value (every secret registered with :func:`register_secret`, e.g. an
``LM(api_key=...)``, is replaced wherever it appears in text). :func:`redacted_errors` does
the same to exceptions leaving a task or a flow, before Prefect writes them anywhere.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

_F = TypeVar("_F", bound=Callable[..., Any])

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(api[_-]?key|secret|token|password|passwd|authorization|auth[_-]?header|credential|"
    r"bearer|cookie|private[_-]?key)",
    re.IGNORECASE,
)
# Tokens that look like provider keys even when nobody registered them.
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9_\-\.=]{8,})")
# A URL's user:password (``http://bob:s3cret@mlflow:5000``): the password goes.
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+):[^/\s@]+@")

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
# Longest first: a secret that contains another registered one (``abc`` and ``abc-123``) is
# replaced whole before the shorter one can cut it into pieces the longer no longer matches.
_ordered: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact_text` removes it wherever it appears."""
    global _secrets, _ordered
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets = _secrets | {value}
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a credential (``api_key``, ``Authorization``, ...)."""
    return bool(_SECRET_KEY.search(key)) and key not in {"max_tokens", "tokens"}


# Where a request goes and what it carries besides the prompt is the loading process's to
# decide, never a saved file's (DESIGN.md, Trust boundaries): these keys are not read from one.
_ROUTE_KEYS = frozenset(
    {"api_base", "base_url", "transport", "headers", "extra_headers", "default_headers"}
    | {"extra_query", "custom_llm_provider", "api_version", "http_client", "proxy", "proxies"}
)
_ROUTE_SUFFIXES = ("_base", "_url", "_headers", "_endpoint", "_host")


def is_route_key(key: str) -> bool:
    """Whether an LM setting names where a request goes or a credential it carries: a saved
    program's value for it is never used."""
    # ``max_completion_tokens`` looks like a credential to is_secret_key but is a parameter.
    secret = is_secret_key(key) and not key.endswith("_tokens")
    return secret or key in _ROUTE_KEYS or key.endswith(_ROUTE_SUFFIXES)


def redact_text(text: str) -> str:
    """Replace every registered secret, anything shaped like a provider key and a URL's
    password."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    # Substring checks run at C speed; the regex only runs where a key shape could be.
    if "sk-" in text or "Bearer" in text:
        text = _KEY_SHAPES.sub(REDACTED, text)
    if "@" in text and "://" in text:
        text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    return text


def redact(value: Any) -> Any:
    """Return a copy of ``value`` with credential keys dropped and secret values replaced."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: redact(v)
            for k, v in value.items()
            if not (isinstance(k, str) and is_secret_key(k) and not k.endswith("_tokens"))
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def _text_leaks(exc: BaseException) -> bool:
    """Whether the text shown for ``exc`` (``str`` and ``repr``) still holds a secret."""
    for show in (str, repr):
        try:
            text = show(exc)
        except Exception:  # a broken __str__ shows nothing; traceback prints a placeholder
            continue
        if redact_text(text) != text:
            return True
    return False


def _scrub(exc: BaseException, seen: set[int]) -> BaseException:
    if id(exc) in seen:
        return exc
    seen.add(id(exc))
    if exc.__cause__ is not None:
        exc.__cause__ = _scrub(exc.__cause__, seen)
    if exc.__context__ is not None:
        exc.__context__ = _scrub(exc.__context__, seen)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        exc.__notes__ = [redact_text(n) if isinstance(n, str) else n for n in notes]
    members_clean = True
    if isinstance(exc, BaseExceptionGroup):  # members are shown in the traceback too
        members_clean = all(_scrub(m, seen) is m for m in exc.exceptions)
    if not _text_leaks(exc) and members_clean:
        return exc
    exc.args = tuple(redact(a) for a in exc.args)
    if not _text_leaks(exc) and members_clean:
        return exc
    # Its text is not built from its args (OSError's attributes, a custom __str__): a dspex
    # error stands in for it, naming its type.
    from dspex.errors import DspexError

    try:
        text = str(exc)
    except Exception:
        text = ""
    stand_in = DspexError(f"{type(exc).__name__}: {redact_text(text)}")
    stand_in.__traceback__ = exc.__traceback__
    stand_in.__suppress_context__ = True  # the original stays out of every traceback
    return stand_in


def redact_exception(exc: BaseException) -> BaseException:
    """``exc`` with every registered secret scrubbed from its text, its notes and the
    exceptions it chains to, so that a traceback, a Prefect state message or a logged
    ``repr`` shows none.

    The exception is changed in place (its ``args``), so its type, attributes and traceback
    stay what callers expect. An exception whose text does not come from its ``args`` and
    still holds a secret is replaced: the result is then a ``DspexError`` naming its type.
    """
    return _scrub(exc, set())


def redacting(fn: _F) -> _F:
    """``fn`` with its body run under :func:`redacted_errors`: for tasks that do not go
    through a run context (dataset loading, registry and promotion steps)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with redacted_errors():
            return fn(*args, **kwargs)

    return cast(_F, wrapper)


@contextmanager
def redacted_errors() -> Iterator[None]:
    """Scrub secrets from any exception leaving the block (see :func:`redact_exception`).

    What wraps a task's or a flow's body: whatever the body raises is what Prefect writes
    to its state message, its result file and its logs.
    """
    try:
        yield
    except Exception as e:
        scrubbed = redact_exception(e)
        if scrubbed is e:
            raise
        raise scrubbed from None
