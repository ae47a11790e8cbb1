"""``CodeAct``: an agent whose actions are Python snippets, run in the sandbox, that may call
the tools it was given.

DSPy's module, its prompts word for word: each turn ``codeact`` writes ``generated_code`` and
a ``finished`` flag; the sandbox runs the code and its output (or its error) joins the
trajectory, until the LM says it is finished or ``max_iters`` turns are used; then
``extractor`` (a ``ChainOfThought``) reads the trajectory and writes the signature's outputs.

Unlike DSPy, which defines each tool inside the interpreter from the function's source code,
the tools stay on the host: the sandbox gets them as host functions
(``PythonInterpreter(tools=...)``), so a tool keeps its imports, closures and state, its
arguments are validated by :class:`~dspex.Tool` before it runs, and a function that was not
passed does not exist in the sandbox. Interpreters are created and closed as
``ProgramOfThought``'s are (see :mod:`dspex.modules._program_of_thought`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from dspex._runtime import run_sync
from dspex._settings import current
from dspex.errors import ContextWindowExceededError, UserError
from dspex.modules._cot import ChainOfThought
from dspex.modules._predict import Predict
from dspex.modules._program_of_thought import (
    CodeInterpreter,
    InterpreterFactory,
    _check_interpreter_args,
    _check_max_iters,
    _checked_interpreter,
    _refuse_interpreter_kwarg,
    deepcopy_sharing,
    execute_code,
    parse_code,
)
from dspex.primitives import Module, Prediction
from dspex.primitives._tool import Tool, tools_by_name
from dspex.signatures import InputField, OutputField, Signature, ensure_signature, make_signature

__all__ = ["CodeAct"]

_log = logging.getLogger("dspex.code_act")

# Trimming the trajectory after a context-window error: at most this many retries (DSPy's).
_TRIM_RETRIES = 3


class CodeAct(Module):
    """An agent that writes Python, run in the sandbox, calling ``tools`` from it until it
    can produce the outputs of ``signature`` (DSPy's ``dspy.CodeAct``, its prompts byte for
    byte).

    Args:
        signature: the task, e.g. ``"n -> factorial: int"``.
        tools: functions or ``dspex.Tool`` objects the code may call by name (each name a
            Python identifier, once). They run on the host, arguments validated first.
        max_iters: the most code snippets per run (a call may pass ``max_iters=`` too).
        interpreter: an interpreter used for every call and never closed by the module; it
            must have the tools (``PythonInterpreter(tools=agent.host_tools())``).
        interpreter_factory: a zero-argument callable creating an interpreter (with the
            tools) for each call, closed when the call ends (default:
            ``dspex.PythonInterpreter(tools=self.host_tools())``).

    The trajectory is returned as ``prediction.trajectory`` (``generated_code_0``,
    ``code_output_0`` or ``observation_0``, ...). ``codeact`` and ``extractor.predict`` are
    the predictors optimizers tune and ``save``/``load`` keep; tools come from code.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> def factorial(n: int) -> int:
        ...     "The factorial of n."
        ...     return 1 if n <= 1 else n * factorial(n - 1)
        >>> lm = DummyLM([
        ...     {"generated_code": "print(factorial(5))", "finished": "True"},
        ...     {"reasoning": "The code printed 120.", "factorial": "120"},
        ... ])
        >>> act = dspex.CodeAct("n: int -> factorial: int", tools=[factorial])
        >>> with dspex.context(lm=lm):  # doctest: +SKIP
        ...     act(n=5).factorial
        120
    """

    def __init__(
        self,
        signature: str | type[Signature],
        tools: Sequence[Callable[..., Any] | Tool],
        max_iters: int = 5,
        interpreter: CodeInterpreter | None = None,
        *,
        interpreter_factory: InterpreterFactory | None = None,
    ) -> None:
        super().__init__()
        self.signature = signature = ensure_signature(signature)
        _check_max_iters(max_iters)
        self.max_iters = max_iters
        tool_map = _tool_map(tools)
        code_desc = (
            "Python code that when executed, produces output relevant to answering the question"
        )
        codeact_signature = make_signature(
            {
                **signature.input_fields,
                "trajectory": (str, InputField()),
                "generated_code": (str, OutputField(desc=code_desc)),
                "finished": (
                    bool,
                    OutputField(desc="a boolean flag to determine if the process is done"),
                ),
            },
            _instructions(signature, tool_map),
        )
        extract_signature = make_signature(
            {**signature.input_fields, **signature.output_fields}, signature.instructions
        ).append("trajectory", InputField(), type_=str)
        self.tools = tool_map
        self.codeact = Predict(codeact_signature)
        self.extractor = ChainOfThought(extract_signature)
        self._interpreter, self._interpreter_factory = _check_interpreter_args(
            interpreter, interpreter_factory
        )

    def host_tools(self) -> dict[str, Callable[..., Any]]:
        """The tools as the sandbox calls them: name -> a host function that takes positional
        or keyword arguments, validates them with the :class:`~dspex.Tool` and calls it. Pass
        it to your own interpreter: ``PythonInterpreter(tools=agent.host_tools())``."""
        return {name: functools.partial(_call_tool, tool) for name, tool in self.tools.items()}

    # -- running ---------------------------------------------------------------------------
    def forward(self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any) -> Prediction:
        """Run the agent; ``interpreter`` (positional) overrides the module's for this call
        and is not closed."""
        return run_sync(self.aforward(interpreter, **kwargs))

    async def aforward(
        self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any
    ) -> Prediction:
        _refuse_interpreter_kwarg(kwargs, self.signature.input_fields)
        max_iters = kwargs.pop("max_iters", self.max_iters)
        trajectory: dict[str, Any] = {}
        async with self._interpreter_for_call(interpreter) as running:
            for idx in range(max_iters):
                code_data = await self.codeact.acall(trajectory=trajectory, **kwargs)
                code, error = parse_code(code_data)
                if error is not None:
                    trajectory[f"observation_{idx}"] = (
                        f"Failed to parse the generated code: {error}"
                    )
                    continue
                trajectory[f"generated_code_{idx}"] = code
                output, error = await execute_code(code, running)
                if error is None:
                    trajectory[f"code_output_{idx}"] = output
                else:
                    trajectory[f"observation_{idx}"] = (
                        f"Failed to execute the generated code: {error}"
                    )
                if code_data.finished:
                    break
        extract, trajectory = await self._call_trimming(self.extractor, trajectory, kwargs)
        return Prediction(trajectory=trajectory, **extract)

    @contextlib.asynccontextmanager
    async def _interpreter_for_call(
        self, override: CodeInterpreter | None
    ) -> AsyncIterator[CodeInterpreter]:
        """The call's interpreter: the caller's (left open) or a new one (closed after)."""
        owned = override or self._interpreter
        if owned is not None:
            yield self._with_tools(_checked_interpreter(owned))
            return
        if self._interpreter_factory is not None:
            created = _checked_interpreter(self._interpreter_factory())
        else:
            from dspex.sandbox import PythonInterpreter

            created = PythonInterpreter(tools=self.host_tools())
        try:
            yield self._with_tools(created)
        finally:
            await asyncio.to_thread(created.shutdown)

    def _with_tools(self, interpreter: CodeInterpreter) -> CodeInterpreter:
        """The interpreter, if the code can call every tool there; the tools cannot be added
        to a running sandbox, so one without them is refused before the LM is called."""
        available = getattr(interpreter, "tools", None)
        missing = [
            n for n in self.tools if not isinstance(available, Mapping) or n not in available
        ]
        if missing:
            raise UserError(
                f"CodeAct: the interpreter lacks the tool(s) {missing}, so the code could not "
                "call them. Create it with the agent's tools: "
                "dspex.PythonInterpreter(tools=agent.host_tools())."
            )
        return interpreter

    async def _call_trimming(
        self, module: Module, trajectory: dict[str, Any], inputs: Mapping[str, Any]
    ) -> tuple[Prediction, dict[str, Any]]:
        """Call ``module`` with the formatted trajectory; after a context-window error, drop
        the oldest step and retry, at most :data:`_TRIM_RETRIES` times."""
        for attempt in range(_TRIM_RETRIES + 1):
            try:
                formatted = _format_trajectory(trajectory)
                return await module.acall(**inputs, trajectory=formatted), trajectory
            except ContextWindowExceededError as err:
                if attempt == _TRIM_RETRIES:
                    raise ContextWindowExceededError(
                        "The context window was exceeded even after "
                        f"{_TRIM_RETRIES} attempts to truncate the trajectory.",
                        model=err.model,
                    ) from err
                _log.warning("Trajectory exceeded the context window, truncating the oldest step.")
                trajectory = _drop_oldest_step(trajectory)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- copies and state ------------------------------------------------------------------
    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # A caller-owned interpreter (a live process) is shared by copies, never copied.
        return deepcopy_sharing(self, memo, self._interpreter)

    def _rebuild_spec(self) -> tuple[str, dict[str, Any]]:
        if type(self) is CodeAct:
            raise UserError(
                "A CodeAct program's tools come from code, so dspex.load() cannot rebuild it "
                "from a file. Subclass CodeAct with an __init__ that takes no arguments and "
                "passes the signature and tools, and save that; or save the state with "
                "save(path.json) and load it into a CodeAct you build."
            )
        return super()._rebuild_spec()


def _call_tool(tool: Tool, *args: Any, **kwargs: Any) -> Any:
    """Call ``tool`` as the sandbox does: positional arguments bind in the order of the
    tool's arguments, then the Tool validates them all."""
    names = list(tool.args)
    if len(args) > len(names):
        raise TypeError(
            f"{tool.name}() takes {len(names)} positional argument(s) but {len(args)} were given"
        )
    for name, value in zip(names, args, strict=False):
        if name in kwargs:
            raise TypeError(f"{tool.name}() got multiple values for argument {name!r}")
        kwargs[name] = value
    return tool(**kwargs)


def _tool_map(tools: Sequence[Callable[..., Any] | Tool]) -> dict[str, Tool]:
    def check(tool: Tool) -> None:
        if not tool.name.isidentifier() or tool.name.startswith("__"):
            raise UserError(
                f"CodeAct: the tool name {tool.name!r} cannot be called from Python code; "
                "give it an identifier with Tool(func, name=...)."
            )

    return tools_by_name(tools, "CodeAct", check)


def _instructions(signature: type[Signature], tools: Mapping[str, Tool]) -> str:
    """DSPy's CodeAct instructions, word for word."""
    inputs = ", ".join(f"`{k}`" for k in signature.input_fields)
    outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
    lines = [f"{signature.instructions}\n"] if signature.instructions else []
    lines.append(
        "You are an intelligent agent. For each episode, you will receive the fields "
        f"{inputs} as input.\n"
        "Your goal is to generate executable Python code that collects any necessary "
        f"information for producing {outputs}.\n"
        "For each iteration, you will generate a code snippet that either solves the task or "
        "progresses towards the solution.\n"
        "Ensure any output you wish to extract from the code is printed to the console. The "
        "code should be enclosed in a fenced code block.\n"
        "When all information for producing the outputs "
        f"({outputs}) are available to be extracted, mark `finished=True` besides the final "
        "Python code.\n"
        "You have access to the Python Standard Library and the following functions:"
    )
    lines.extend(f"({i + 1}) {tool}" for i, tool in enumerate(tools.values()))
    return "\n".join(lines)


def _format_trajectory(trajectory: Mapping[str, Any]) -> str:
    """The trajectory as the adapter writes input fields, one section per key (DSPy's)."""
    from dspex.adapters import ChatAdapter

    adapter = current().adapter or ChatAdapter()
    fields: dict[str, Any] = {key: InputField() for key in trajectory}
    signature = make_signature({**fields, "x": OutputField()})
    return str(adapter.format_user_message_content(signature, trajectory))


def _drop_oldest_step(trajectory: dict[str, Any]) -> dict[str, Any]:
    """The trajectory without its oldest step's keys (``*_0``, then ``*_1``, ...)."""
    steps = sorted({key.rsplit("_", 1)[1] for key in trajectory}, key=int)
    if len(steps) <= 1:
        raise ContextWindowExceededError(
            "The trajectory is too long so your prompt exceeded the context window, but the "
            "trajectory cannot be truncated because it only has one step."
        )
    return {k: v for k, v in trajectory.items() if k.rsplit("_", 1)[1] != steps[0]}
