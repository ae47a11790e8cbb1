"""The code sandbox: run untrusted Python (an LM's code) in Pyodide inside Deno.

:class:`PythonInterpreter` is the entry point; docs/code-execution.md has the threat model
(what the sandbox stops and what it does not) and the offline setup.

Example:
    >>> from dspex.sandbox import PythonInterpreter
    >>> with PythonInterpreter(timeout=10) as interpreter:  # doctest: +SKIP
    ...     interpreter("x + 1", {"x": 41})
    42
"""

from dspex.sandbox._deno import PYODIDE_VERSION, prefetch
from dspex.sandbox._errors import (
    CodeExecutionError,
    CodeInterpreterError,
    CodeSyntaxError,
    SandboxCrashError,
    SandboxMemoryError,
    SandboxTimeoutError,
    SandboxUnavailableError,
)
from dspex.sandbox._interpreter import Execution, FinalOutput, PythonInterpreter

__all__ = [
    "PYODIDE_VERSION",
    "CodeExecutionError",
    "CodeInterpreterError",
    "CodeSyntaxError",
    "Execution",
    "FinalOutput",
    "PythonInterpreter",
    "SandboxCrashError",
    "SandboxMemoryError",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
    "prefetch",
]
