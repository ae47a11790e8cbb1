"""``Adapter``: turns a signature, demos and inputs into messages, and LM text back into fields.

The call protocol shared by every adapter lives here: format, call the LM, parse and validate;
on a parse or validation failure, evict the bad response from the cache and re-ask once in
JSON mode with a fresh rollout (never a cached replay); if that fails too, raise a
``ParseError`` that names the field, the failure, and the raw text of the *first* attempt.

A completion cut off at the token limit (finish reason ``"length"``) is never accepted, even
when its text happens to parse: a cut-off answer is a wrong answer that looks right. When no
completion is left, the adapter raises ``ParseError(truncated=True)`` at once, without the
re-ask, which the same limit would cut off too. (The LM never caches such an answer.)
"""

from __future__ import annotations

import enum
import json
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pydantic

from dspex._jsonable import json_default
from dspex.callbacks import active, current_span, emit
from dspex.errors import ParseError
from dspex.lm._types import token_limit
from dspex.primitives._usage import Usage

if TYPE_CHECKING:
    from dspex.lm import LM
    from dspex.signatures import Field, Signature

__all__ = ["Adapter", "FieldParseFailure", "format_value", "parse_value"]


class FieldParseFailure(Exception):
    """Internal: one completion could not be parsed; becomes a ``ParseError`` at the end."""

    def __init__(self, field: str | None, reason: str, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.truncated = truncated


def format_value(value: Any) -> str:
    """Render an input or demo value for a prompt: strings as-is, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    if isinstance(value, enum.Enum):
        return str(value.value)
    try:
        return json.dumps(value, ensure_ascii=False, default=json_default)
    except TypeError:
        return str(value)


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def parse_value(text: str, annotation: Any) -> Any:
    """Turn a field's raw text into a value pydantic can validate against ``annotation``."""
    if annotation is str:
        return text.strip()
    text = _strip_fences(text)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum)
    ):
        return text.strip().strip("'\"`")
    if annotation in (int, float, bool):
        return text.strip().strip("'\"`").rstrip(".")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import ast

        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text


def validate_outputs(signature: type[Signature], values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate raw values into the declared types; raise ``FieldParseFailure`` naming the field.

    A wrong value is reported before a missing one: it says more about what went wrong.
    """
    try:
        model = signature.output_model().model_validate(dict(values))
    except pydantic.ValidationError as e:
        errors = e.errors()
        err = next((x for x in errors if x.get("type") != "missing"), errors[0])
        name = str((err.get("loc") or ("?",))[0])
        if err.get("type") == "missing":
            raise FieldParseFailure(name, f"the answer has no value for field {name!r}") from None
        raise FieldParseFailure(name, f"{err.get('msg')} (got {err.get('input')!r:.200})") from None
    return {n: getattr(model, n) for n in signature.output_fields}


class Adapter:
    """Base adapter. Subclasses implement ``format``, ``parse`` and optionally ``lm_kwargs``."""

    name = "Adapter"

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        """Parse and validate one completion; raise ``FieldParseFailure`` on failure."""
        raise NotImplementedError

    def lm_kwargs(self, signature: type[Signature]) -> dict[str, Any]:
        """Extra request parameters this adapter needs (e.g. JSON mode)."""
        return {}

    async def acall(
        self,
        lm: LM,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> tuple[list[dict[str, Any]], Usage]:
        """Call ``lm`` and return the parsed completions and the usage of every request."""
        callbacks = active()
        messages = self.format(signature, demos, inputs)
        if callbacks:
            emit(callbacks, "on_adapter_format", current_span(), self, signature, messages)
        kwargs = {**lm_kwargs, **self.lm_kwargs(signature)}
        response = await lm.aforward(messages, **kwargs)
        parsed, failure = self._parse_all(signature, response.outputs, response.finish_reasons)
        if callbacks:
            emit(
                callbacks,
                "on_adapter_parse",
                current_span(),
                self,
                signature,
                response,
                parsed if failure is None else None,
                failure,
            )
        if failure is None:
            return parsed, response.usage
        # An unparseable answer must not be replayed from the cache next time.
        lm.evict(messages, **kwargs)
        first_raw = response.outputs[0] if response.outputs else ""
        if failure.truncated:
            raise self._parse_error(signature, failure, first_raw, None, lm, kwargs)
        fallback = self.fallback()
        fb_messages = fallback.format(signature, demos, inputs)
        fb_kwargs = {**lm_kwargs, **fallback.lm_kwargs(signature)}
        # A rollout id of its own gives the re-ask a fresh cache key, derived from the original
        # request so that a resumed run replays a re-ask that worked instead of paying again.
        fb_kwargs["rollout_id"] = f"reask:{lm_kwargs.get('rollout_id')}"
        fb_response = await lm.aforward(fb_messages, **fb_kwargs)
        usage = response.usage + fb_response.usage
        fb_parsed, fb_failure = fallback._parse_all(
            signature, fb_response.outputs, fb_response.finish_reasons
        )
        if callbacks:
            emit(
                callbacks,
                "on_adapter_parse",
                current_span(),
                fallback,
                signature,
                fb_response,
                fb_parsed if fb_failure is None else None,
                fb_failure,
            )
        if fb_failure is None:
            return fb_parsed, usage
        lm.evict(fb_messages, **fb_kwargs)
        fb_raw = fb_response.outputs[0] if fb_response.outputs else ""
        if fb_failure is not None and fb_failure.truncated:
            failure = fb_failure  # the re-ask was cut off: that is what to fix
        raise self._parse_error(signature, failure, first_raw, fb_raw, lm, fb_kwargs)

    def _parse_error(
        self,
        signature: type[Signature],
        failure: FieldParseFailure,
        raw: str,
        fallback_raw: str | None,
        lm: LM,
        kwargs: Mapping[str, Any],
    ) -> ParseError:
        return ParseError(
            signature=f"{signature.__name__}({signature.signature})",
            field=failure.field,
            reason=failure.reason,
            raw=raw,
            adapter=self.name,
            fallback_raw=fallback_raw,
            truncated=failure.truncated,
            model=lm.model,
            max_tokens=token_limit({**lm.kwargs, **kwargs}),
        )

    def fallback(self) -> Adapter:
        """The adapter used for the single re-ask."""
        from dspex.adapters._json import JSONAdapter

        return JSONAdapter()

    def _parse_all(
        self,
        signature: type[Signature],
        outputs: Sequence[str],
        finish_reasons: Sequence[str | None] = (),
    ) -> tuple[list[dict[str, Any]], FieldParseFailure | None]:
        """Parse every completion; keep those that parse. Fail only when none does.

        A completion cut off at the token limit is rejected unparsed, and when nothing is
        left the truncation is the failure reported: it is the one to fix.
        """
        parsed: list[dict[str, Any]] = []
        first_failure: FieldParseFailure | None = None
        cut: FieldParseFailure | None = None
        for i, text in enumerate(outputs):
            if i < len(finish_reasons) and finish_reasons[i] == "length":
                cut = cut or FieldParseFailure(
                    None, "the answer was cut off at the token limit", truncated=True
                )
                continue
            try:
                parsed.append(self.parse(signature, text))
            except FieldParseFailure as f:
                first_failure = first_failure or f
        if parsed:
            return parsed, None
        failure = cut or first_failure
        return [], failure or FieldParseFailure(None, "the LM returned no completions")


def describe_fields(fields: Mapping[str, Field]) -> str:
    """``1. `question` (str): the question`` lines, as DSPy's adapters write them."""
    lines = []
    for i, (name, f) in enumerate(fields.items(), 1):
        desc = f": {f.desc}" if f.desc else ""
        lines.append(f"{i}. `{name}` ({f.type_name}){desc}")
    return "\n".join(lines)


def type_hint(f: Field) -> str:
    """What the LM must produce for a non-string field, or ``""`` for ``str``."""
    ann = f.annotation
    if ann is str:
        return ""
    if ann in (int, float, bool):
        return f"must be formatted as a valid Python {ann.__name__}"
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        options = "; ".join(str(a) for a in typing.get_args(ann))
        return f"must exactly match (no extra characters) one of: {options}"
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        options = "; ".join(str(m.value) for m in ann)
        return f"must exactly match (no extra characters) one of: {options}"
    schema = pydantic.TypeAdapter(ann).json_schema()
    return f"must adhere to the JSON schema: {json.dumps(schema, separators=(',', ':'))}"
