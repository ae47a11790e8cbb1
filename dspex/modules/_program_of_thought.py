"""``ProgramOfThought``: the LM writes Python that computes the answer; the sandbox runs it.

DSPy's module, its prompts word for word: ``code_generate`` writes code, the sandbox
(``dspex.PythonInterpreter``: Pyodide in Deno) runs it, an error goes back to
``code_regenerate`` together with the failed code, up to ``max_iters`` attempts in all; then
``generate_output`` reads the final code and its output and writes the signature's outputs.

Code runs only in an interpreter, never on the host. An error the code caused (it raised, did
not parse, ran past its timeout or memory cap) is shown to the LM; a sandbox that is not
installed (:class:`~dspex.sandbox.SandboxUnavailableError`) propagates.

Interpreters, and who closes them:

- by default each call creates its own ``PythonInterpreter`` (``interpreter_factory``) and
  closes it when the call ends, so concurrent calls and copies share nothing;
- ``ProgramOfThought(..., interpreter=it)`` uses ``it`` for every call and never closes it
  (DSPy 3.0's argument): the caller does, and calls take turns on its one process;
- ``program(it, question=...)`` (DSPy 3.4's per-call override) uses ``it`` for that call only,
  and the caller closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from dspex._runtime import run_sync
from dspex.errors import DspexError, UserError
from dspex.modules._cot import ChainOfThought
from dspex.primitives import Module, Prediction
from dspex.signatures import InputField, OutputField, Signature, ensure_signature, make_signature

__all__ = ["CodeInterpreter", "ProgramOfThought", "ProgramOfThoughtError"]

_log = logging.getLogger("dspex.program_of_thought")

_Mode = Literal["generate", "regenerate", "answer"]
_CODE_DESC = "python code that answers the question"


@runtime_checkable
class CodeInterpreter(Protocol):
    """What ProgramOfThought and CodeAct need of an interpreter (DSPy's protocol, in part);
    ``dspex.PythonInterpreter`` is one."""

    def execute(self, code: str, variables: Mapping[str, Any] | None = None) -> Any: ...

    def shutdown(self) -> None: ...


InterpreterFactory = Callable[[], CodeInterpreter]


class ProgramOfThoughtError(DspexError, RuntimeError):
    """No code ran without an error within ``max_iters`` attempts (a ``RuntimeError``, as
    DSPy raises). ``code`` is the last code tried and ``error`` what went wrong with it."""

    def __init__(self, module: str, max_iters: int, code: str, error: str) -> None:
        super().__init__(
            f"Max hops reached. Failed to run {module}: {error}\n"
            f"No generated code ran without an error in max_iters={max_iters} attempts. "
            "Raise max_iters, give the signature clearer instructions, or check the last code "
            "(the error's .code)."
        )
        self.code = code
        self.error = error


def _default_factory() -> CodeInterpreter:
    # Imported here: the sandbox is needed only when code runs, not for `import dspex`.
    from dspex.sandbox import PythonInterpreter

    return PythonInterpreter()


class ProgramOfThought(Module):
    """Solves a task by having the LM write Python that the sandbox runs (DSPy's
    ``dspy.ProgramOfThought``, its prompts byte for byte).

    Args:
        signature: the task, e.g. ``"question -> answer: int"``.
        max_iters: attempts at writing code that runs (the first one included).
        interpreter: an interpreter used for every call and never closed by the module
            (the caller closes it; variables the code defines persist between calls).
        interpreter_factory: a zero-argument callable that creates an interpreter for each
            call, closed when the call ends (default: ``dspex.PythonInterpreter()``).

    ``code_generate.predict``, ``code_regenerate.predict`` and ``generate_output.predict``
    are the predictors optimizers tune and ``save``/``load`` keep.

    Raises (on a call):
        ProgramOfThoughtError: (a ``RuntimeError``) no code ran within ``max_iters`` attempts.
        dspex.sandbox.SandboxUnavailableError: Deno or Pyodide is not installed.

    Example:
        >>> import dspex
        >>> from dspex.testing import DummyLM
        >>> lm = DummyLM([
        ...     {"reasoning": "Compute it.", "generated_code": "SUBMIT({'answer': 2**64})"},
        ...     {"reasoning": "The code printed it.", "answer": "18446744073709551616"},
        ... ])
        >>> pot = dspex.ProgramOfThought("question -> answer: int")
        >>> with dspex.context(lm=lm):  # doctest: +SKIP
        ...     pot(question="What is 2 to the 64th?").answer
        18446744073709551616
    """

    def __init__(
        self,
        signature: str | type[Signature],
        max_iters: int = 3,
        interpreter: CodeInterpreter | None = None,
        *,
        interpreter_factory: InterpreterFactory | None = None,
    ) -> None:
        super().__init__()
        self.signature = signature = ensure_signature(signature)
        _check_max_iters(max_iters)
        self.max_iters = max_iters
        self.input_fields = signature.input_fields
        self.output_fields = signature.output_fields
        self.code_generate = ChainOfThought(self._mode_signature("generate"))
        self.code_regenerate = ChainOfThought(self._mode_signature("regenerate"))
        self.generate_output = ChainOfThought(self._mode_signature("answer"))
        self._interpreter, self._interpreter_factory = _check_interpreter_args(
            interpreter, interpreter_factory
        )

    # -- prompts ---------------------------------------------------------------------------
    def _mode_fields(self, mode: _Mode) -> dict[str, Any]:
        fields: dict[str, Any] = dict(self.input_fields)
        if mode == "generate":
            fields["generated_code"] = OutputField(desc=_CODE_DESC)
        elif mode == "regenerate":
            fields["previous_code"] = InputField(
                desc="previously-generated python code that errored"
            )
            fields["error"] = InputField(desc="error message from previously-generated python code")
            fields["generated_code"] = OutputField(desc=_CODE_DESC)
        else:
            fields["final_generated_code"] = InputField(desc=_CODE_DESC)
            fields["code_output"] = InputField(desc="output of previously-generated python code")
            fields.update(self.output_fields)
        return fields

    def _mode_signature(self, mode: _Mode) -> type[Signature]:
        sig = make_signature(self._mode_fields(mode))
        return sig.with_instructions(_instructions(mode, sig, self.output_fields))

    # -- running ---------------------------------------------------------------------------
    def forward(self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any) -> Prediction:
        """Run the program; ``interpreter`` (positional) overrides the module's for this call
        and is not closed."""
        return run_sync(self.aforward(interpreter, **kwargs))

    async def aforward(
        self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any
    ) -> Prediction:
        _refuse_interpreter_kwarg(kwargs, self.input_fields)
        inputs = {name: kwargs[name] for name in self.input_fields if name in kwargs}
        async with self._interpreter_for_call(interpreter) as running:
            code_data = await self.code_generate.acall(**inputs)
            code, error, output = await self._attempt(code_data, running)
            hop = 1
            while error is not None:
                _log.info("Error in code execution: %s", error)
                if hop == self.max_iters:
                    raise ProgramOfThoughtError(type(self).__name__, self.max_iters, code, error)
                code_data = await self.code_regenerate.acall(
                    **inputs, previous_code=code, error=error
                )
                code, error, output = await self._attempt(code_data, running)
                hop += 1
        return await self.generate_output.acall(
            **inputs, final_generated_code=code, code_output=output
        )

    async def _attempt(
        self, code_data: Prediction, interpreter: CodeInterpreter
    ) -> tuple[str, str | None, str | None]:
        """Parse the predicted code and run it: ``(code, error, output)``."""
        code, error = parse_code(code_data)
        if error is not None:
            return code, error, None
        output, error = await execute_code(code, interpreter)
        return code, error, output

    @contextlib.asynccontextmanager
    async def _interpreter_for_call(
        self, override: CodeInterpreter | None
    ) -> AsyncIterator[CodeInterpreter]:
        """The call's interpreter: the caller's (left open) or a new one (closed after)."""
        owned = override or self._interpreter
        if owned is not None:
            yield _checked_interpreter(owned)
            return
        created = _checked_interpreter(self._make_interpreter())
        try:
            yield created
        finally:
            await asyncio.to_thread(created.shutdown)

    def _make_interpreter(self) -> CodeInterpreter:
        return (self._interpreter_factory or _default_factory)()

    # -- copies and state ------------------------------------------------------------------
    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # A caller-owned interpreter (a live process) is shared by copies, never copied.
        return deepcopy_sharing(self, memo, self._interpreter)

    def _rebuild_spec(self) -> tuple[str, dict[str, Any]]:
        if type(self) is ProgramOfThought:
            from dspex.modules._predict import typed_spec

            return "dspex:ProgramOfThought", {
                "signature": typed_spec(self.signature),
                "max_iters": self.max_iters,
            }
        return super()._rebuild_spec()


# -- shared with CodeAct -------------------------------------------------------------------


def parse_code(code_data: Prediction) -> tuple[str, str | None]:
    """DSPy's reading of ``generated_code``: the first fenced ```` ```python ```` block (else
    the text), cut at ``---`` or two blank lines; a last line ``name = ...`` gets ``name``
    appended so its value is the result. ``(code, error)``; ``error`` is for the LM."""
    text = str(code_data.get("generated_code", "") or "")
    text = text.split("---", 1)[0].split("\n\n\n", 1)[0]
    fenced = re.search(r"```python[ \n](.*?)[ \n]```?", text, re.DOTALL)
    block = fenced.group(1) if fenced else text
    if not block:
        return text, "Error: Empty code after parsing."
    if "\n" not in block and block.count("=") > 1:
        return text, "Error: Code format is not correct."
    assigned = re.match(r"^(\w+)\s*=", block.split("\n")[-1].strip())
    if assigned:
        block += "\n" + assigned.group(1)
    return block, None


async def execute_code(code: str, interpreter: CodeInterpreter) -> tuple[str | None, str | None]:
    """Run ``code``; ``(output as JSON, None)`` or ``(None, error for the LM)``. The sandbox's
    errors (the code raised, did not parse, timed out, crashed) are the code's fault and go
    to the LM; anything else (a missing sandbox) propagates."""
    from dspex.sandbox import CodeInterpreterError, FinalOutput

    if not code:
        return None, "Error: Empty code before execution."
    try:
        result = await asyncio.to_thread(interpreter.execute, code)
    except (CodeInterpreterError, SyntaxError) as err:
        return None, str(err)
    if isinstance(result, FinalOutput) or type(result).__name__ == "FinalOutput":
        result = result.output
    try:
        return json.dumps(result), None
    except (TypeError, ValueError) as err:  # a custom interpreter's non-JSON result
        return None, f"{type(err).__name__}: {err}"


def _checked_interpreter(interpreter: Any) -> CodeInterpreter:
    if not isinstance(interpreter, CodeInterpreter):
        raise UserError(
            "interpreter must have execute(code, variables=None) and shutdown(), like "
            f"dspex.PythonInterpreter; got {type(interpreter).__name__}."
        )
    return interpreter


def _check_interpreter_args(
    interpreter: CodeInterpreter | None, factory: InterpreterFactory | None
) -> tuple[CodeInterpreter | None, InterpreterFactory | None]:
    if interpreter is not None and factory is not None:
        raise UserError(
            "Pass interpreter= (one interpreter you own, used by every call) or "
            "interpreter_factory= (a new interpreter per call), not both."
        )
    if interpreter is not None:
        _checked_interpreter(interpreter)
    if factory is not None and (isinstance(factory, CodeInterpreter) or not callable(factory)):
        raise UserError(
            "interpreter_factory must be a zero-argument callable that creates an interpreter "
            "(e.g. dspex.PythonInterpreter or a lambda); to share one interpreter, pass "
            "interpreter= instead."
        )
    return interpreter, factory


def _check_max_iters(max_iters: int) -> None:
    if not isinstance(max_iters, int) or max_iters < 1:
        raise UserError(f"max_iters must be a positive integer, not {max_iters!r}.")


def _refuse_interpreter_kwarg(kwargs: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
    if "interpreter" in kwargs and "interpreter" not in inputs:
        raise UserError(
            "To use an interpreter for one call, pass it as the first positional argument: "
            "program(interpreter, question=...)."
        )


def deepcopy_sharing(module: Module, memo: dict[int, Any], shared: Any) -> Any:
    """A deep copy of ``module`` in which ``shared`` (if not None) is the same object."""
    if shared is not None:
        memo.setdefault(id(shared), shared)
    new = module.__class__.__new__(module.__class__)
    memo[id(module)] = new
    for attr, value in vars(module).items():
        object.__setattr__(new, attr, copy.deepcopy(value, memo))
    return new


def _instructions(mode: _Mode, fields: type[Signature], final_outputs: Mapping[str, Any]) -> str:
    """DSPy's ProgramOfThought instructions, word for word."""
    inputs = ", ".join(f"`{name}`" for name in fields.input_fields)
    outputs = ", ".join(f"`{name}`" for name in fields.output_fields)
    finals = ", ".join(f"`{name}`" for name in final_outputs)
    if mode == "generate":
        lines = [
            f"You will be given {inputs} and you will respond with {outputs}.",
            "Generating executable Python code that programmatically computes the correct "
            f"{outputs}.",
            "After you're done with the computation and think you have the final output, make "
            "sure to submit your output by calling the preloaded function `SUBMIT()`.",
            'You must structure your output in a dict, like {"field_a": value_a, ...}, with the '
            f"correct value mapping for the field(s): {finals}.",
        ]
    elif mode == "regenerate":
        lines = [
            f"You are given {inputs} due to an error in previous code.",
            "Your task is to correct the error and provide the new `generated_code`.",
        ]
    else:
        lines = [f"Given the final code {inputs}, provide the final {outputs}."]
    return "\n".join(lines)
