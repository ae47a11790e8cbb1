"""``Adapter``: turns a signature, demos and inputs into messages, and LM text back into fields.

The messages are DSPy 3.4's, byte for byte (``tests/adapters/test_golden_prompts.py``): the
method names below are DSPy's too, so an adapter subclass written for DSPy overrides the same
hooks. The layout, from :meth:`Adapter.format`::

    system     field descriptions, field structure, task description (the instructions)
    user/asst  each demo: incomplete ones (a field missing or None) first, then complete ones
    user/asst  each message of a ``History`` input, when the signature has one
    user       the inputs, then a reminder of the output format

The call protocol shared by every adapter lives here too: format, call the LM, parse. On a
parse failure the bad response is evicted from the cache; an adapter with a :meth:`fallback`
(``ChatAdapter``: ``JSONAdapter``) re-asks once with a fresh rollout (never a cached replay);
if that fails too, or there is no fallback, it raises ``AdapterParseError`` (a ``ParseError``)
that names the field, the failure, and the raw text of the *first* attempt.

A completion cut off at the token limit (finish reason ``"length"``) is never accepted, even
when its text happens to parse: a cut-off answer is a wrong answer that looks right. When no
completion is left, the adapter raises ``AdapterParseError(truncated=True)`` at once, without
the re-ask, which the same limit would cut off too. (The LM never caches such an answer.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, get_args, get_origin

import pydantic

from dspex._runtime import run_sync
from dspex.adapters._format import field_descriptions, format_field_value
from dspex.adapters._types import History, ToolCalls, expand_content_parts
from dspex.callbacks import active, current_span, emit
from dspex.errors import AdapterParseError, UserError
from dspex.lm._types import token_limit
from dspex.primitives._usage import Usage

if TYPE_CHECKING:
    from dspex.lm import LM
    from dspex.signatures import Field, Signature

__all__ = ["Adapter", "FieldParseFailure"]

INCOMPLETE_DEMO_PREFIX = (
    "This is an example of the task, though some input or output fields are not supplied."
)
NOT_SUPPLIED = "Not supplied for this particular example. "
# Request parameters of function calling, dropped when the adapter does not call natively.
_TOOL_PARAMS = ("tools", "tool_choice", "parallel_tool_calls")
NOT_SUPPLIED_HISTORY = "Not supplied for this conversation history message. "


class FieldParseFailure(AdapterParseError):
    """One completion could not be parsed: what :meth:`Adapter.parse` raises.

    ``field`` names the output field at fault (``None`` when the whole answer was unreadable);
    the pydantic or JSON error underneath is the ``__cause__``.
    """


def validation_reason(error: pydantic.ValidationError) -> str:
    """The first error of a validation, as one line: a wrong value before a missing one."""
    errors = error.errors()
    err = next((x for x in errors if x.get("type") != "missing"), errors[0])
    loc = ".".join(str(p) for p in err.get("loc", ()))
    where = f" at {loc}" if loc else ""
    if err.get("type") == "missing":
        return f"a required value is missing{where}"
    return f"{err.get('msg')}{where} (got {err.get('input')!r:.200})"


class Adapter:
    """Base adapter. Subclasses implement the ``format_*`` hooks and :meth:`parse`.

    Args:
        callbacks: ``dspex.Callback`` objects told of this adapter's ``format`` and ``parse``
            steps (``on_adapter_format``/``on_adapter_parse``), besides those in
            ``dspex.context(callbacks=...)``.

    An adapter is called as DSPy's is, ``adapter(lm, lm_kwargs, signature, demos, inputs)``
    (or ``await adapter.acall(...)``), and returns one dict of output values per completion.
    """

    name = "Adapter"

    def __init__(
        self,
        callbacks: Sequence[Any] | None = None,
        *,
        use_native_function_calling: bool = False,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        self.callbacks: list[Any] = list(callbacks or [])
        self.use_native_function_calling = use_native_function_calling
        self.parallel_tool_calls = parallel_tool_calls

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- calling -------------------------------------------------------------------------
    def __call__(
        self,
        lm: LM,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """Format, call ``lm`` and parse: one dict of output values per completion."""
        return run_sync(self.acall(lm, lm_kwargs, signature, demos, inputs))

    async def acall(
        self,
        lm: LM,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """The async form of calling the adapter."""
        outputs, _ = await self.acall_with_usage(lm, lm_kwargs, signature, demos, inputs)
        return outputs

    async def acall_with_usage(
        self,
        lm: LM,
        lm_kwargs: Mapping[str, Any],
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> tuple[list[dict[str, Any]], Usage]:
        """Call ``lm`` and return the parsed completions and the usage of every request."""
        callbacks = active()
        if self.callbacks:
            callbacks = (*callbacks, *self.callbacks)
        native_kwargs = dict(lm_kwargs)
        render, tool_field = self._plan_native_tools(lm, native_kwargs, signature, inputs)
        messages = self.format(render, demos, inputs)
        if callbacks:
            emit(callbacks, "on_adapter_format", current_span(), self, render, messages)
        extra = self.lm_kwargs(render, lm)
        kwargs = {**native_kwargs, **extra} if extra else native_kwargs
        response = await lm._adapter_aforward(messages, **kwargs)
        if tool_field is None:  # what _parse_response does then, one call fewer
            parsed, failure = self._parse_all(signature, response.outputs, response.finish_reasons)
        else:
            parsed, failure = self._parse_response(render, signature, tool_field, response)
        if callbacks:
            self._emit_parse(callbacks, signature, response, parsed, failure)
        if failure is None:
            return parsed, response.usage
        # An unparseable answer must not be replayed from the cache next time.
        lm.evict(messages, **kwargs)
        first_raw = response.outputs[0] if response.outputs else ""
        fallback = None if failure.truncated else self.fallback()
        if fallback is None:
            raise self._parse_error(signature, failure, first_raw, None, lm, kwargs) from failure
        fb_native = dict(lm_kwargs)
        fb_render, fb_field = fallback._plan_native_tools(lm, fb_native, signature, inputs)
        fb_messages = fallback.format(fb_render, demos, inputs)
        fb_kwargs = {**fb_native, **fallback.lm_kwargs(fb_render, lm)}
        # A rollout id of its own gives the re-ask a fresh cache key, derived from the original
        # request so that a resumed run replays a re-ask that worked instead of paying again.
        fb_kwargs["rollout_id"] = f"reask:{lm_kwargs.get('rollout_id')}"
        fb_response = await lm._adapter_aforward(fb_messages, **fb_kwargs)
        usage = response.usage + fb_response.usage
        fb_parsed, fb_failure = fallback._parse_response(
            fb_render, signature, fb_field, fb_response
        )
        fallback._emit_parse(callbacks, signature, fb_response, fb_parsed, fb_failure)
        if fb_failure is None:
            return fb_parsed, usage
        lm.evict(fb_messages, **fb_kwargs)
        fb_raw = fb_response.outputs[0] if fb_response.outputs else ""
        if fb_failure.truncated:
            failure = fb_failure  # the re-ask was cut off: that is what to fix
        error = self._parse_error(signature, failure, first_raw, fb_raw, lm, fb_kwargs)
        raise error from fb_failure

    # -- native function calling (DSPy's ``_call_preprocess``/``_call_postprocess``) --------
    def _plan_native_tools(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        inputs: Mapping[str, Any],
    ) -> tuple[type[Signature], str | None]:
        """The signature to render and the ``ToolCalls`` field the provider fills natively.

        With native function calling on, a ``list[Tool]`` input goes to the provider as
        OpenAI ``tools`` (set in ``lm_kwargs``, which this updates) and both fields leave the
        prompt; off, request-level tool parameters are dropped, as DSPy does.
        """
        # getattr: an adapter subclass may not call ``Adapter.__init__``.
        if not getattr(self, "use_native_function_calling", False):
            for key in _TOOL_PARAMS:
                lm_kwargs.pop(key, None)
            return signature, None
        input_field = tool_input_field(signature)
        output_field = tool_calls_field(signature)
        if output_field is None:
            return signature, None
        if input_field is None:
            raise UserError(
                f"You provided an output field {output_field!r} to receive the tool calls, but "
                "no tools as an input: add an input field of type `list[dspex.Tool]`."
            )
        if not getattr(lm, "supports_function_calling", True):
            for key in _TOOL_PARAMS:
                lm_kwargs.pop(key, None)
            return signature, None
        tools = inputs.get(input_field) or []
        tools = tools if isinstance(tools, list | tuple) else [tools]
        lm_kwargs["tools"] = [tool.format_as_litellm_function_call() for tool in tools]
        parallel = getattr(self, "parallel_tool_calls", None)
        if parallel is not None and lm_kwargs.get("parallel_tool_calls") is None:
            lm_kwargs["parallel_tool_calls"] = parallel
        return _without_tool_fields(signature, input_field, output_field), output_field

    def _parse_response(
        self,
        render: type[Signature],
        signature: type[Signature],
        tool_field: str | None,
        response: Any,
    ) -> tuple[list[dict[str, Any]], FieldParseFailure | None]:
        """Parse every completion; with a native ``ToolCalls`` field, the choices' tool calls
        fill it, and an answer with tool calls needs no parseable text."""
        if tool_field is None:
            return self._parse_all(signature, response.outputs, response.finish_reasons)
        from dspex.adapters._parse import output_defaults

        all_calls = getattr(response, "tool_calls", ()) or ()
        reasons = response.finish_reasons
        parsed: list[dict[str, Any]] = []
        failure: FieldParseFailure | None = None
        for i, text in enumerate(response.outputs):
            calls = all_calls[i] if i < len(all_calls) else ()
            reason = reasons[i] if i < len(reasons) else None
            if calls and reason != "length":
                try:
                    value = self.parse(render, text) if text and render.output_fields else {}
                except AdapterParseError:
                    value = {}
            else:
                values, failed = self._parse_all(render, [text], [reason])
                if failed is not None:
                    failure = failure or failed
                    continue
                value = values[0]
            value = output_defaults(signature.output_fields, value)
            value = {name: value.get(name) for name in signature.output_fields}
            if calls:
                value[tool_field] = ToolCalls.from_dict_list(
                    [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
                )
            parsed.append(value)
        if parsed:
            return parsed, None
        return [], failure or FieldParseFailure(
            self.name, signature, "", "the LM returned no completions"
        )

    def _emit_parse(
        self,
        callbacks: tuple[Any, ...],
        signature: type[Signature],
        response: Any,
        parsed: list[dict[str, Any]],
        failure: FieldParseFailure | None,
    ) -> None:
        if callbacks:
            outputs = parsed if failure is None else None
            span = current_span()
            emit(callbacks, "on_adapter_parse", span, self, signature, response, outputs, failure)

    def _parse_error(
        self,
        signature: type[Signature],
        failure: FieldParseFailure,
        raw: str,
        fallback_raw: str | None,
        lm: LM,
        kwargs: Mapping[str, Any],
    ) -> AdapterParseError:
        return AdapterParseError(
            self.name,
            signature,
            raw,
            failure.reason,
            failure.parsed_result,
            field=failure.field,
            fallback_raw=fallback_raw,
            truncated=failure.truncated,
            model=lm.model,
            max_tokens=token_limit({**lm.kwargs, **kwargs}),
        )

    def fallback(self) -> Adapter | None:
        """The adapter of the single re-ask after a parse failure; ``None``: no re-ask."""
        return None

    def lm_kwargs(self, signature: type[Signature], lm: Any = None) -> dict[str, Any]:
        """Extra request parameters this adapter needs (e.g. JSON mode)."""
        return {}

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
                    self.name,
                    signature,
                    text,
                    "the answer was cut off at the token limit",
                    truncated=True,
                )
                continue
            try:
                if not text:
                    raise FieldParseFailure(
                        self.name, signature, "", "The LM returned an empty or null response."
                    )
                parsed.append(self.parse(signature, text))
            except FieldParseFailure as f:
                first_failure = first_failure or f
            except AdapterParseError as e:  # raised by a user's own parse()
                first_failure = first_failure or _as_failure(e)
        if parsed:
            return parsed, None
        failure = cut or first_failure
        return [], failure or FieldParseFailure(
            self.name, signature, "", "the LM returned no completions"
        )

    # -- formatting (DSPy's hooks) -------------------------------------------------------
    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """The chat messages for one call: system, demos, history, then the inputs."""
        inputs_copy = dict(inputs)
        history_field = self._get_history_field_name(signature)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self._system_message(signature)}
        ]
        messages.extend(self.format_demos(signature, demos))
        if history_field:
            without = _without_field(signature, history_field)
            history = self.format_conversation_history(without, history_field, inputs_copy)
            content = self.format_user_message_content(without, inputs_copy, main_request=True)
            messages.extend(history)
        else:
            content = self.format_user_message_content(signature, inputs_copy, main_request=True)
        if content:
            messages.append({"role": "user", "content": content})
        # Images and other content-part types become parts of their user message.
        return [expand_content_parts(m) for m in messages]

    def _system_message(self, signature: type[Signature]) -> str:
        # Rendered once per (adapter class, signature): the same for every call of a program.
        cache: dict[type, tuple[Any, Any, str]] | None = signature.__dict__.get(
            "_dspex_system_messages"
        )
        if cache is None:
            cache = {}
            setattr(signature, "_dspex_system_messages", cache)  # noqa: B010
        hit = cache.get(type(self))
        if hit and hit[0] is signature.instructions and hit[1] is signature.fields:
            return hit[2]
        text = self.format_system_message(signature)
        cache[type(self)] = (signature.instructions, signature.fields, text)
        return text

    def format_system_message(self, signature: type[Signature]) -> str:
        return (
            f"{self.format_field_description(signature)}\n"
            f"{self.format_field_structure(signature)}\n"
            f"{self.format_task_description(signature)}"
        )

    def format_field_description(self, signature: type[Signature]) -> str:
        return (
            f"Your input fields are:\n{field_descriptions(signature.input_fields)}\n"
            f"Your output fields are:\n{field_descriptions(signature.output_fields)}"
        )

    def format_field_structure(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def format_task_description(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        raise NotImplementedError

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        raise NotImplementedError

    def assistant_message(self, signature: type[Signature], outputs: Mapping[str, Any]) -> str:
        """The assistant turn that answers with ``outputs`` (finetuning data uses it)."""
        return self.format_assistant_message_content(signature, outputs)

    def format_demos(
        self, signature: type[Signature], demos: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Each demo as a user/assistant pair: incomplete demos first, then complete ones.

        A demo is complete when every field is present and not ``None``; an incomplete one
        is kept when it has at least one input and one output, and says so.
        """
        if not demos:
            return []
        complete, incomplete = [], []
        for demo in demos:
            if all(k in demo and demo[k] is not None for k in signature.fields):
                complete.append(demo)
            elif any(k in demo for k in signature.input_fields) and any(
                k in demo for k in signature.output_fields
            ):
                incomplete.append(demo)
        messages = []
        for demo in incomplete:
            user = self.format_user_message_content(signature, demo, prefix=INCOMPLETE_DEMO_PREFIX)
            assistant = self.format_assistant_message_content(signature, demo, NOT_SUPPLIED)
            messages += [{"role": "user", "content": user}, _assistant(assistant)]
        for demo in complete:
            user = self.format_user_message_content(signature, demo)
            assistant = self.format_assistant_message_content(signature, demo, NOT_SUPPLIED_HISTORY)
            messages += [{"role": "user", "content": user}, _assistant(assistant)]
        return messages

    def _get_history_field_name(self, signature: type[Signature]) -> str | None:
        memo = signature_memo(signature)
        try:
            found: str | None = memo["history_field"]
            return found
        except KeyError:
            pass
        fields: Mapping[str, Field] = signature.input_fields
        found = next(
            (
                name
                for name, f in fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, History)
            ),
            None,
        )
        memo["history_field"] = found
        return found

    def format_conversation_history(
        self,
        signature: type[Signature],
        history_field_name: str,
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Each history message as a user turn (its inputs) and an assistant turn (its outputs).

        ``signature`` is the one without the history field; the field is removed from
        ``inputs``.
        """
        if history_field_name not in inputs:
            return []
        history = _history_messages(inputs.pop(history_field_name))
        messages = []
        for message in history:
            main = any(name in message for name in signature.input_fields)
            user = self.format_user_message_content(signature, message, main_request=main)
            if user:
                messages.append({"role": "user", "content": user})
            assistant = self.format_assistant_message_content(signature, message)
            if assistant:
                messages.append(_assistant(assistant))
        return messages

    def format_field_with_value(self, fields_with_values: Sequence[tuple[Field, Any]]) -> str:
        """``[[ ## name ## ]]`` sections for the given fields and values."""
        return "\n\n".join(
            f"[[ ## {f.name} ## ]]\n{format_field_value(f, value)}"
            for f, value in fields_with_values
        ).strip()

    # -- parsing -------------------------------------------------------------------------
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Parse one completion into output values; raise ``AdapterParseError`` if it cannot."""
        raise NotImplementedError


def signature_memo(signature: type[Signature]) -> dict[str, Any]:
    """A dict for what adapters derive from a signature's fields and instructions alone
    (the history field, the output-format reminder), so it is worked out once, not per call.

    Kept on the signature class and dropped when its ``fields`` or ``instructions`` are not
    the ones it was made for (signatures are never mutated: a new one is a new class).
    """
    memo: tuple[Any, str, dict[str, Any]] | None = getattr(signature, "_dspex_adapter_memo", None)
    if memo is None or memo[0] is not signature.fields or memo[1] is not signature.instructions:
        memo = (signature.fields, signature.instructions, {})
        setattr(signature, "_dspex_adapter_memo", memo)  # noqa: B010
    return memo[2]


def tool_input_field(signature: type[Signature]) -> str | None:
    """The input field holding tools (``list[Tool]`` or ``Tool``), as DSPy finds it."""
    from dspex.primitives._tool import Tool

    for name, f in signature.input_fields.items():
        annotation = f.annotation
        if get_origin(annotation) is list and get_args(annotation)[:1] == (Tool,):
            return str(name)
        if annotation is Tool:
            return str(name)
    return None


def tool_calls_field(signature: type[Signature]) -> str | None:
    """The output field of type ``ToolCalls``, if any."""
    for name, f in signature.output_fields.items():
        if f.annotation is ToolCalls:
            return str(name)
    return None


def _assistant(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def _as_failure(error: AdapterParseError) -> FieldParseFailure:
    failure = FieldParseFailure(
        error.adapter_name,
        error.signature,
        error.lm_response,
        error.reason,
        error.parsed_result,
        field=error.field,
    )
    failure.__cause__ = error
    return failure


def _history_messages(value: Any) -> Sequence[Mapping[str, Any]]:
    if value is None:
        return []
    if isinstance(value, History):
        return value.messages
    if isinstance(value, Mapping) and "messages" in value:
        return list(value["messages"])
    messages = getattr(value, "messages", value)  # a DSPy History, or a plain list
    return [m for m in messages if isinstance(m, Mapping)]


def _without_tool_fields(signature: type[Signature], tools: str, calls: str) -> type[Signature]:
    """The signature without its tools input and its ``ToolCalls`` output, made once per
    signature; it may have no outputs left (DSPy's renders so)."""
    from dspex.signatures._signature import _build

    key = f"_dspex_native_{tools}_{calls}"
    derived: type[Signature] | None = signature.__dict__.get(key)
    if derived is None:
        fields = {n: f for n, f in signature.fields.items() if n not in (tools, calls)}
        derived = _build(signature.__name__, fields, signature.instructions, validate=False)
        setattr(signature, key, derived)
    return derived


def _without_field(signature: type[Signature], name: str) -> type[Signature]:
    """``signature.delete(name)``, made once per signature."""
    key = f"_dspex_without_{name}"
    derived: type[Signature] | None = signature.__dict__.get(key)
    if derived is None:
        derived = signature.delete(name)
        setattr(signature, key, derived)
    return derived
