"""``Tool``: a Python function an agent may call, with DSPy's name, description and schema.

A call validates its arguments with pydantic before the function runs, is observed through
the callbacks (a ``tool`` span: ``on_tool_start``/``on_tool_end``, and a trace row when
recording), and may be bounded by a timeout: a sync function then runs in a thread of its
own, an async one under ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

from dspex._runtime import run_sync
from dspex.callbacks import Observation, active, observed
from dspex.errors import UserError
from dspex.primitives._tool_schema import ArgSpec, inspect_function, schema_to_args

__all__ = ["AllowPolicy", "Tool", "tools_by_name"]


class Tool:
    """A function an agent (``dspex.ReAct``) may call; DSPy's ``dspy.Tool``.

    Name, description and argument schemas come from the function (its ``__name__``,
    docstring, type hints and defaults) unless given. Arguments are validated with pydantic
    before the function runs; invalid ones raise ``DataError`` (a ``ValueError``) and the
    function is not called.

    Args:
        func: any sync or async callable.
        name: the name the LM calls it by (default: ``func.__name__``).
        desc: what it does (default: the docstring).
        args: argument name -> JSON schema (default: from the type hints).
        arg_types: argument name -> Python type the value is validated as.
        arg_desc: argument name -> description, added to its schema.
        timeout: seconds a call may take (``None``: no limit of its own; ``ReAct`` then
            applies its ``tool_timeout``). A sync function past its timeout keeps running in
            its thread (Python cannot stop a thread) but its result is dropped.

    Example:
        >>> import dspex
        >>> def add(a: int, b: int = 1) -> int:
        ...     "Add two numbers."
        ...     return a + b
        >>> tool = dspex.Tool(add)
        >>> tool.args
        {'a': {'type': 'integer'}, 'b': {'type': 'integer', 'default': 1}}
        >>> tool(a="2", b=3)
        5
    """

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        desc: str | None = None,
        args: dict[str, Any] | None = None,
        arg_types: dict[str, Any] | None = None,
        arg_desc: dict[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        if not callable(func):
            raise UserError(f"Tool(func=...) needs a callable, got {type(func).__name__}.")
        if timeout is not None and not timeout > 0:
            raise UserError(f"Tool(timeout={timeout!r}): give a positive number of seconds.")
        info = inspect_function(func, arg_desc)
        self.func = func
        self.name: str = name or info.name
        self.desc: str | None = desc or info.desc
        self.args: dict[str, Any] = args if args is not None else info.args
        self.arg_types: dict[str, Any] = arg_types if arg_types is not None else info.arg_types
        self.arg_desc = arg_desc
        self.has_kwargs = info.has_kwargs
        self.timeout = timeout
        self._spec = ArgSpec(self.name, self.args, self.arg_types, info.required, info.has_kwargs)

    # -- DSPy's conversions ----------------------------------------------------------------
    @classmethod
    def from_mcp_tool(
        cls,
        session: Any,
        tool: Any,
        *,
        result_mode: Literal["text", "structured"] = "text",
        timeout: float | None = None,
    ) -> Tool:
        """A tool that calls ``tool`` (an ``mcp.types.Tool``) through ``session`` (an MCP
        ``ClientSession``, or anything with an async ``call_tool(name, arguments=...)``).

        The result is the text content (one string, or a list of them), else the other
        content; with ``result_mode="structured"``, the structured content when the result
        has it. An MCP error result raises ``RuntimeError``.
        """
        if result_mode not in ("text", "structured"):
            raise UserError(
                f"Unsupported MCP result mode: {result_mode!r}; use 'text' or 'structured'."
            )
        schema = getattr(tool, "inputSchema", None) or getattr(tool, "input_schema", None) or {}
        args, arg_types, arg_desc = schema_to_args(schema)
        tool_name = str(tool.name)

        async def call_mcp(**kwargs: Any) -> Any:
            return _mcp_result(await session.call_tool(tool_name, arguments=kwargs), result_mode)

        return cls(
            call_mcp,
            name=tool_name,
            desc=getattr(tool, "description", None),
            args=args,
            arg_types=arg_types,
            arg_desc=arg_desc,
            timeout=timeout,
        )

    @classmethod
    def from_langchain(cls, tool: Any, *, timeout: float | None = None) -> Tool:
        """A tool that calls a LangChain tool (``@tool`` or a ``BaseTool``) by ``ainvoke``."""
        schema_model = tool.args_schema
        args, _, arg_desc = schema_to_args(schema_model.model_json_schema())
        arg_types = {
            key: field.annotation if field.annotation is not None else Any
            for key, field in schema_model.model_fields.items()
        }

        async def call_langchain(**kwargs: Any) -> Any:
            try:
                return await tool.ainvoke(kwargs)
            except Exception as e:
                raise RuntimeError(f"Failed to call LangChain tool {tool.name}: {e!s}") from e

        return cls(
            call_langchain,
            name=tool.name,
            desc=tool.description,
            args=args,
            arg_types=arg_types,
            arg_desc=arg_desc,
            timeout=timeout,
        )

    def format(self) -> str:
        """How the tool is written into a prompt (DSPy's ``Tool.format``)."""
        return str(self)

    def format_as_litellm_function_call(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.desc,
                "parameters": {
                    "type": "object",
                    "properties": self.args,
                    "required": [k for k in self.args if "default" not in self.args[k]],
                },
            },
        }

    # -- calling ---------------------------------------------------------------------------
    def validate(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments parsed to their types; ``DataError`` when they do not fit."""
        return self._spec.validate(kwargs)

    def __call__(self, **kwargs: Any) -> Any:
        """Validate the arguments and call the function (an async one runs to completion on
        dspex's event loop)."""
        callbacks = active()
        if not callbacks:
            return self._call_sync(self.validate(kwargs), self.timeout)
        with self._observed(callbacks, kwargs) as call:
            call.result = result = self._call_sync(self.validate(kwargs), self.timeout)
        return result

    async def acall(self, **kwargs: Any) -> Any:
        """Validate the arguments and await the call; a sync function runs in a thread."""
        return await self.arun(kwargs, self.timeout)

    async def arun(
        self,
        kwargs: Mapping[str, Any],
        timeout: float | None,
        allow: AllowPolicy | None = None,
    ) -> Any:
        """:meth:`acall` with the arguments as a mapping, a timeout for this call, and a policy
        that sees the validated arguments first and may refuse the call.

        Raises:
            DataError: the arguments do not fit; the function was not called.
            PermissionError: ``allow`` refused the call; the function was not called.
            TimeoutError: the call took longer than ``timeout`` seconds.
        """
        callbacks = active()
        if not callbacks:
            return await self._checked(kwargs, timeout, allow)
        with self._observed(callbacks, kwargs) as call:
            call.result = result = await self._checked(kwargs, timeout, allow)
        return result

    async def _checked(
        self, kwargs: Mapping[str, Any], timeout: float | None, allow: AllowPolicy | None
    ) -> Any:
        parsed = self.validate(kwargs)
        if allow is not None:
            await _check_policy(allow, self.name, parsed)
        return await self._call_async(parsed, timeout)

    def _call_sync(self, parsed: dict[str, Any], timeout: float | None) -> Any:
        if _is_async(self.func):
            return run_sync(self._await(self.func(**parsed), timeout))
        if timeout is None:
            result = self.func(**parsed)
        else:
            result = self._wait(_in_thread(self.func, parsed, self.name), timeout)
        if inspect.isawaitable(result):
            return run_sync(self._await(result, timeout))
        return result

    async def _call_async(self, parsed: dict[str, Any], timeout: float | None) -> Any:
        if _is_async(self.func):
            return await self._await(self.func(**parsed), timeout)
        future = asyncio.wrap_future(_in_thread(self.func, parsed, self.name))
        try:
            result = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise self._timed_out(timeout, thread=True) from None
        if inspect.isawaitable(result):
            return await self._await(result, timeout)
        return result

    async def _await(self, awaitable: Awaitable[Any], timeout: float | None) -> Any:
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise self._timed_out(timeout, thread=False) from None

    def _wait(self, future: concurrent.futures.Future[Any], timeout: float) -> Any:
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise self._timed_out(timeout, thread=True) from None

    def _timed_out(self, timeout: float | None, *, thread: bool) -> TimeoutError:
        note = " (it keeps running in its thread; its result will be dropped)" if thread else ""
        return TimeoutError(
            f"tool {self.name!r} did not finish within {float(timeout or 0):g} s{note}"
        )

    def _observed(
        self, callbacks: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> AbstractContextManager[Observation]:
        """The call's ``tool`` span: ``on_tool_start(span, name, args)`` before it and
        ``on_tool_end(span, name, result, error)`` after it (validation failures included)."""
        return observed(callbacks, "tool", self.name, (self.name, dict(kwargs)), (self.name,))

    # -- values ----------------------------------------------------------------------------
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """A ``Tool`` may be a signature input (``tools: list[dspex.Tool]``): written into
        prompts as DSPy writes it, its :meth:`format` text."""
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(
            cls, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Tool:
        # The function comes from code and is shared (it may hold clients, locks...).
        new = copy.copy(self)
        new.args = copy.deepcopy(self.args, memo)
        return new

    def __repr__(self) -> str:
        return f"Tool(name={self.name}, desc={self.desc}, args={self.args})"

    def __str__(self) -> str:
        desc = (
            f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ")
            if self.desc
            else "."
        )
        return f"{self.name}{desc} It takes arguments {self.args}."


class AllowPolicy(Protocol):
    """Decides whether an agent may make a tool call: sees the tool's name and the validated
    arguments, and returns ``True`` to allow it, ``False`` to refuse it (or raises
    ``PermissionError`` with the reason). May be async."""

    def __call__(self, name: str, args: dict[str, Any]) -> bool | Awaitable[bool]: ...


async def _check_policy(allow: AllowPolicy, name: str, args: dict[str, Any]) -> None:
    """Raise ``PermissionError`` unless ``allow`` allows the call. A policy that fails
    refuses (fail closed): a broken guard must not let a call through."""
    try:
        verdict = allow(name, dict(args))
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except PermissionError:
        raise
    except Exception as e:
        raise PermissionError(
            f"the allow policy failed ({type(e).__name__}), so the call to {name!r} was refused "
            "and not run"
        ) from None
    if verdict is not True:
        raise PermissionError(f"the allow policy refused this call to {name!r}; it was not run")


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def _in_thread(
    func: Callable[..., Any], kwargs: dict[str, Any], name: str
) -> concurrent.futures.Future[Any]:
    """Run ``func(**kwargs)`` in a daemon thread of its own, in a copy of this context.

    Not a pool: a tool that never returns holds its own thread, never a worker that other
    calls wait for, and a daemon thread does not keep the process alive at exit.
    """
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    ctx = contextvars.copy_context()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(ctx.run(func, **kwargs))
        except BaseException as e:
            future.set_exception(e)

    threading.Thread(target=run, name=f"dspex-tool-{name}", daemon=True).start()
    return future


def _mcp_result(result: Any, mode: str) -> Any:
    """An MCP ``CallToolResult`` as DSPy returns it: the text (one string or a list), else the
    non-text content (or, in ``structured`` mode, the structured content when set); an error
    result raises."""
    texts, others = [], []
    for content in getattr(result, "content", None) or []:
        if getattr(content, "type", None) == "text" and hasattr(content, "text"):
            texts.append(content.text)
        else:
            others.append(content)
    text: Any = texts[0] if len(texts) == 1 else texts
    if getattr(result, "isError", None) or getattr(result, "is_error", None):
        raise RuntimeError(f"Failed to call a MCP tool: {text}")
    if mode == "structured":
        for attr in ("structuredContent", "structured_content"):
            fields_set = getattr(result, "model_fields_set", None)
            if (attr in fields_set) if fields_set is not None else hasattr(result, attr):
                return getattr(result, attr, None)
    return text or others


def tools_by_name(
    tools: Sequence[Callable[..., Any] | Tool],
    owner: str,
    check: Callable[[Tool], None] | None = None,
) -> dict[str, Tool]:
    """Each tool (a ``Tool`` or a plain function, wrapped) by its name, for an agent module
    named ``owner``. ``check`` refuses names the module cannot use; two tools with one name
    are refused."""
    found: dict[str, Tool] = {}
    for item in tools:
        tool = item if isinstance(item, Tool) else Tool(item)
        if check is not None:
            check(tool)
        if tool.name in found:
            raise UserError(
                f"{owner}: two tools are named {tool.name!r}; give one another name with "
                "Tool(func, name=...)."
            )
        found[tool.name] = tool
    return found
