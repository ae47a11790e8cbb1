"""``ReAct``: an agent loop of reasoning and tool calls, with DSPy's prompts and trajectory.

Each turn the ``react`` predictor writes ``next_thought``, ``next_tool_name`` and
``next_tool_args``; the tool's result (its *observation*) joins the trajectory, until the agent
calls ``finish`` or runs out of turns. Then ``extract`` (a ``ChainOfThought``) reads the
trajectory and writes the signature's outputs.

Safer than DSPy's: every tool call has a timeout; a tool that fails, times out, is unknown,
gets invalid arguments or is refused by the ``allow`` policy becomes an observation that names
the error type with a short redacted message (never a traceback), and only a known tool with
valid, allowed arguments runs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

from dspex._redact import redact_text
from dspex._runtime import run_sync
from dspex._settings import current
from dspex.errors import AdapterParseError, ContextWindowExceededError, ParseError, UserError
from dspex.modules._cot import ChainOfThought
from dspex.modules._predict import Predict
from dspex.primitives import Module, Prediction
from dspex.primitives._tool import AllowPolicy, Tool, tools_by_name
from dspex.signatures import InputField, OutputField, Signature, ensure_signature, make_signature

__all__ = ["ReAct"]

_log = logging.getLogger("dspex.react")

# Trimming the trajectory after a context-window error: at most this many retries per call.
_TRIM_RETRIES = 3
# The keys one step adds to the trajectory: thought, tool name, tool args, observation.
_STEP_KEYS = 4
_MAX_ERROR_CHARS = 400


def _finish() -> str:
    return "Completed."


class ReAct(Module):
    """Reasoning and acting: an agent that calls ``tools`` until it can produce the outputs of
    ``signature`` (DSPy's ``dspy.ReAct``, its prompts byte for byte).

    Args:
        signature: the task, e.g. ``"question -> answer"``.
        tools: functions or ``dspex.Tool`` objects (a name may appear once; ``finish`` is
            ReAct's own).
        max_iters: the most tool calls per run (a call may pass ``max_iters=`` too).
        tool_timeout: seconds a tool call may take unless its ``Tool(timeout=...)`` says
            otherwise; ``None``: no limit.
        allow: a policy called with each tool name and its validated arguments before the
            call; anything but ``True`` refuses the call, which is recorded as an observation
            and never run.

    The trajectory is returned as ``prediction.trajectory`` (``thought_0``, ``tool_name_0``,
    ``tool_args_0``, ``observation_0``, ...). ``react`` and ``extract.predict`` are the
    predictors optimizers tune and ``save``/``load`` keep; tools come from code and are not
    saved.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> def add(a: int, b: int) -> int:
        ...     "Add two integers."
        ...     return a + b
        >>> lm = DummyLM([
        ...     {"next_thought": "Add them.", "next_tool_name": "add",
        ...      "next_tool_args": {"a": 2, "b": 3}},
        ...     {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}},
        ...     {"reasoning": "2 + 3 = 5", "answer": "5"},
        ... ])
        >>> agent = dspex.ReAct("question -> answer: int", tools=[add])
        >>> with dspex.context(lm=lm):
        ...     pred = agent(question="What is 2 + 3?")
        >>> pred.answer, pred.trajectory["observation_0"]
        (5, 5)
    """

    def __init__(
        self,
        signature: str | type[Signature],
        tools: Sequence[Callable[..., Any] | Tool],
        max_iters: int = 20,
        *,
        tool_timeout: float | None = 60.0,
        allow: AllowPolicy | None = None,
    ) -> None:
        super().__init__()
        self.signature = signature = ensure_signature(signature)
        self.max_iters = max_iters
        if tool_timeout is not None and not tool_timeout > 0:
            raise UserError(f"ReAct(tool_timeout={tool_timeout!r}): give a positive number.")
        tool_map = _tool_map(tools)
        outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
        tool_map["finish"] = Tool(
            func=_finish,
            name="finish",
            desc=(
                "Marks the task as complete. That is, signals that all information for producing "
                f"the outputs, i.e. {outputs}, are now available to be extracted."
            ),
            args={},
        )
        react_signature = make_signature(
            {
                **signature.input_fields,
                "trajectory": (str, InputField()),
                "next_thought": (str, OutputField()),
                "next_tool_name": (_literal(tuple(tool_map)), OutputField()),
                "next_tool_args": (dict[str, Any], OutputField()),
            },
            _instructions(signature, tool_map),
        )
        fallback_signature = make_signature(
            {**signature.input_fields, **signature.output_fields}, signature.instructions
        ).append("trajectory", InputField(), type_=str)
        self.tools = tool_map
        self.react = Predict(react_signature)
        self.extract = ChainOfThought(fallback_signature)
        self.tool_timeout = tool_timeout
        self.allow = allow

    # -- running ---------------------------------------------------------------------------
    def forward(self, **input_args: Any) -> Prediction:
        return run_sync(self.aforward(**input_args))

    async def aforward(self, **input_args: Any) -> Prediction:
        trajectory: dict[str, Any] = {}
        max_iters = input_args.pop("max_iters", self.max_iters)
        for idx in range(max_iters):
            try:
                pred, trajectory = await self._call_trimming(self.react, trajectory, input_args)
            except ContextWindowExceededError as err:
                _log.warning("Ending the trajectory: %s", redact_text(str(err)))
                break
            except AdapterParseError as err:
                step = self._recover_step(err)
                if step is None:
                    raise
                thought, name, args = step
            else:
                thought, name, args = pred.next_thought, pred.next_tool_name, pred.next_tool_args
            trajectory[f"thought_{idx}"] = thought
            trajectory[f"tool_name_{idx}"] = name
            trajectory[f"tool_args_{idx}"] = args
            trajectory[f"observation_{idx}"] = await self._act(name, args)
            if name == "finish":
                break
        extract, trajectory = await self._call_trimming(self.extract, trajectory, input_args)
        return Prediction(trajectory=trajectory, **extract)

    async def _act(self, name: Any, args: Any) -> Any:
        """Run one tool call; what it returns, or what went wrong, is the observation."""
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return (
                f"Execution error in {name}: there is no tool named {name!r}; the tools are "
                f"{', '.join(self.tools)}. Nothing was run."
            )
        if not isinstance(args, Mapping):
            return (
                f"Execution error in {name}: next_tool_args must be a JSON object of "
                f"arguments, got {type(args).__name__}. Nothing was run."
            )
        timeout = tool.timeout if tool.timeout is not None else self.tool_timeout
        allow = self.allow if name != "finish" else None
        try:
            return await tool.arun(args, timeout, allow)
        except Exception as err:
            return _error_observation(name, err)

    async def _call_trimming(
        self, module: Module, trajectory: dict[str, Any], inputs: Mapping[str, Any]
    ) -> tuple[Prediction, dict[str, Any]]:
        """Call ``module`` with the trajectory; after a context-window error, drop the oldest
        step and retry, at most :data:`_TRIM_RETRIES` times. Returns the prediction and the
        trajectory it saw."""
        for attempt in range(_TRIM_RETRIES + 1):
            try:
                formatted = self._format_trajectory(trajectory)
                return await module.acall(**inputs, trajectory=formatted), trajectory
            except ContextWindowExceededError as err:
                if attempt == _TRIM_RETRIES:
                    raise ContextWindowExceededError(
                        "The context window was exceeded even after "
                        f"{_TRIM_RETRIES} attempts to truncate the trajectory.",
                        model=err.model,
                    ) from err
                _log.warning(
                    "Trajectory exceeded the context window, truncating the oldest tool call "
                    "information."
                )
                trajectory = self.truncate_trajectory(trajectory)
        raise AssertionError("unreachable")  # pragma: no cover

    def truncate_trajectory(self, trajectory: dict[str, Any]) -> dict[str, Any]:
        """The trajectory without its oldest step (a copy), so the prompt fits the context
        window. Override it for another policy.

        Raises:
            ContextWindowExceededError: there is only one step, so nothing can be dropped.
        """
        keys = list(trajectory)
        if len(keys) <= _STEP_KEYS:
            raise ContextWindowExceededError(
                "The trajectory is too long so your prompt exceeded the context window, but the "
                "trajectory cannot be truncated because it only has one tool call."
            )
        return {k: trajectory[k] for k in keys[_STEP_KEYS:]}

    def _format_trajectory(self, trajectory: Mapping[str, Any]) -> str:
        from dspex.adapters import ChatAdapter

        adapter = current().adapter or ChatAdapter()
        signature = _trajectory_signature(tuple(trajectory))
        return str(adapter.format_user_message_content(signature, trajectory))

    def _recover_step(self, err: AdapterParseError) -> tuple[Any, Any, Any] | None:
        """A step whose tool name or arguments did not parse (an unknown tool, arguments that
        are not an object): read it again without those types, so that it becomes an
        observation instead of ending the run. ``None`` when it cannot be read."""
        if err.truncated or err.field not in ("next_tool_name", "next_tool_args"):
            return None
        from dspex.adapters import ChatAdapter, JSONAdapter

        lenient = self.react.signature.with_updated_fields(
            "next_tool_name", type_=str
        ).with_updated_fields("next_tool_args", type_=Any)
        for raw in (err.raw, err.fallback_raw):
            for adapter in (ChatAdapter(), JSONAdapter()):
                if not raw:
                    continue
                try:
                    out = adapter.parse(lenient, raw)
                except (ParseError, ValueError):
                    continue
                return out["next_thought"], out["next_tool_name"], out["next_tool_args"]
        return None

    # -- state -----------------------------------------------------------------------------
    def _rebuild_spec(self) -> tuple[str, dict[str, Any]]:
        if type(self) is ReAct:
            raise UserError(
                "A ReAct program's tools come from code, so dspex.load() cannot rebuild it from "
                "a file. Subclass ReAct with an __init__ that takes no arguments and passes the "
                "signature and tools, and save that; or save the state with save(path.json) "
                "and load it into a ReAct you build."
            )
        return super()._rebuild_spec()


def _literal(names: tuple[str, ...]) -> Any:
    """``Literal["search", ..., "finish"]``, built from names known only at run time."""
    return cast(Any, Literal)[names]


def _tool_map(tools: Sequence[Callable[..., Any] | Tool]) -> dict[str, Tool]:
    def check(tool: Tool) -> None:
        if tool.name == "finish":
            raise UserError(
                "ReAct: a tool is named 'finish', which is ReAct's own tool for ending the run; "
                "rename it (Tool(func, name=...))."
            )

    return tools_by_name(tools, "ReAct", check)


def _instructions(signature: type[Signature], tools: Mapping[str, Tool]) -> str:
    """DSPy's ReAct instructions, word for word."""
    inputs = ", ".join(f"`{k}`" for k in signature.input_fields)
    outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
    instr = [f"{signature.instructions}\n"] if signature.instructions else []
    instr.extend(
        [
            f"You are an Agent. In each episode, you will be given the fields {inputs} as input. "
            "And you can see your past trajectory so far.",
            "Your goal is to use one or more of the supplied tools to collect any necessary "
            f"information for producing {outputs}.\n",
            "To do this, you will interleave next_thought, next_tool_name, and next_tool_args in "
            "each turn, and also when finishing the task.",
            "After each tool call, you receive a resulting observation, which gets appended to "
            "your trajectory.\n",
            "When writing next_thought, you may reason about the current situation and plan for "
            "future steps.",
            "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n",
        ]
    )
    instr.extend(f"({i + 1}) {tool}" for i, tool in enumerate(tools.values()))
    instr.append(
        "When providing `next_tool_args`, the value inside the field must be in JSON format"
    )
    return "\n".join(instr)


@functools.lru_cache(maxsize=256)
def _trajectory_signature(keys: tuple[str, ...]) -> type[Signature]:
    fields: dict[str, Any] = {k: InputField() for k in keys}
    return make_signature({**fields, "x": OutputField()})


def _error_observation(name: str, err: Exception) -> str:
    """What the agent sees of a failed call: the error type and a short, redacted message."""
    try:
        text = str(err)
    except Exception:  # a broken __str__ must not end the run
        text = ""
    message = " ".join(redact_text(text).split())
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + "..."
    kind = type(err).__name__
    return (
        f"Execution error in {name}: {kind}: {message}"
        if message
        else (f"Execution error in {name}: {kind}")
    )
