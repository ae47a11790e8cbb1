"""What the sandbox raises.

The hierarchy (under :class:`dspex.errors.DspexError`)::

    CodeInterpreterError          the code did not run to completion (DSPy's name); a program
    │                             that writes code (ProgramOfThought, CodeAct) catches this
    │                             and shows the message to the LM
    ├── CodeExecutionError        the code raised: ``error_type``, the sandbox's ``traceback``
    │   └── CodeSyntaxError       the code does not parse (also a ``SyntaxError``)
    ├── SandboxTimeoutError       it ran past its wall-clock timeout: the process was killed
    ├── SandboxMemoryError        it went past its memory cap: the process was killed
    └── SandboxCrashError         the sandbox process died or broke the protocol
    SandboxUnavailableError       Deno or Pyodide is missing or would not start: a setup
                                  problem (a ``ConfigurationError``), never the code's fault

After a timeout, a memory error or a crash the interpreter starts a fresh process on its next
call: the variables the code had defined are gone.
"""

from __future__ import annotations

from dspex.errors import ConfigurationError, DspexError

__all__ = [
    "CodeExecutionError",
    "CodeInterpreterError",
    "CodeSyntaxError",
    "SandboxCrashError",
    "SandboxMemoryError",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
]


class CodeInterpreterError(DspexError):
    """The code did not run to completion in the sandbox.

    Attributes:
        stdout: what the code printed before it stopped ("" if nothing).
    """

    def __init__(self, message: str, *, stdout: str = "") -> None:
        super().__init__(message)
        self.stdout = stdout


class CodeExecutionError(CodeInterpreterError):
    """The code raised an exception inside the sandbox.

    Attributes:
        error_type: the Python exception's class name, e.g. ``"ZeroDivisionError"``.
        traceback: the traceback as the sandbox's Python formatted it, starting in the code.
    """

    def __init__(self, error_type: str, message: str, traceback: str, *, stdout: str = "") -> None:
        super().__init__(f"{error_type}: {message}" if message else error_type, stdout=stdout)
        self.error_type = error_type
        self.traceback = traceback


class CodeSyntaxError(CodeExecutionError, SyntaxError):
    """The code is not valid Python (also a ``SyntaxError``, as DSPy raises)."""


class SandboxTimeoutError(CodeInterpreterError):
    """The code ran past the interpreter's ``timeout``; its process was killed."""


class SandboxMemoryError(CodeInterpreterError):
    """The code went past the interpreter's ``memory_limit_mb``; its process was killed."""


class SandboxCrashError(CodeInterpreterError):
    """The sandbox process exited or wrote something outside the protocol; it was stopped."""


class SandboxUnavailableError(ConfigurationError):
    """Deno or Pyodide is missing, or the sandbox would not start: the message says how to
    install them. dspex never falls back to running code on the host."""
