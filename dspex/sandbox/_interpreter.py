"""PythonInterpreter: run untrusted Python in Pyodide inside a permissionless Deno process."""

from __future__ import annotations

import functools
import hashlib
import json
import keyword
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from dspex._jsonable import json_default
from dspex._redact import redact_text
from dspex.errors import UserError
from dspex.sandbox._deno import (
    PYODIDE_VERSION,
    deno_command,
    find_deno,
    find_pyodide,
    resolve_deno_dir,
    sandbox_env,
)
from dspex.sandbox._errors import (
    CodeExecutionError,
    CodeSyntaxError,
    SandboxCrashError,
    SandboxMemoryError,
    SandboxTimeoutError,
    SandboxUnavailableError,
)
from dspex.sandbox._process import DenoProcess

__all__ = ["Execution", "FinalOutput", "PythonInterpreter"]

# Deno, V8 and Pyodide's runtime take about 160 MiB before any code runs: the hard cap on the
# process's resident memory is the code's memory limit plus this.
ENGINE_OVERHEAD_MB = 256
_RESERVED = frozenset({"SUBMIT", "ToolError"})


@dataclass(frozen=True)
class FinalOutput:
    """What the code passed to ``SUBMIT(...)``: a dict of fields, or the one value given."""

    output: Any


@dataclass(frozen=True)
class Execution:
    """Everything one run of code produced.

    Attributes:
        value: the value of the code's last expression (None if it ends in a statement), or
            what it passed to ``SUBMIT``.
        final: whether the code called ``SUBMIT``.
        stdout: what it printed.
        stderr: what it wrote to ``sys.stderr``.
        duration_s: wall-clock seconds of the call, start-up of the sandbox excluded.
    """

    value: Any
    final: bool
    stdout: str
    stderr: str
    duration_s: float

    @property
    def output(self) -> Any:
        """DSPy's result: a :class:`FinalOutput` if the code called ``SUBMIT``, else the
        last expression's value, else what the code printed."""
        if self.final:
            return FinalOutput(self.value)
        return self.value if self.value is not None else self.stdout


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise UserError(f"{what} {name!r} is not a Python identifier")
    if name.startswith("__") or name in _RESERVED:
        raise UserError(f"{what} {name!r} is reserved in the sandbox; choose another name")
    return name


def _field_names(fields: Sequence[str | Mapping[str, Any]] | None) -> list[str] | None:
    if fields is None:
        return None
    # DSPy passes [{"name": ..., "type": ...}]; a plain list of names works too.
    names = [f if isinstance(f, str) else str(f.get("name")) for f in fields]
    return [_check_name(name, "output field") for name in names]


class PythonInterpreter:
    """Runs Python code in a sandbox: Pyodide (CPython in WebAssembly) inside Deno.

    The code gets no file-system, network, environment or subprocess access, a wall-clock
    ``timeout`` per call and a memory cap; past either its process is killed and a fresh one
    starts on the next call. Variables go in and results come out as JSON. Host functions
    are callable from the code only when passed in ``tools``. Without Deno or Pyodide it
    raises :class:`SandboxUnavailableError`; it never runs code on the host.

    One Deno process lives as long as the interpreter (starting it takes a second or more;
    the first start on a machine several, while it writes a start-up snapshot). Variables the
    code defines persist between calls until a restart. Calls from several threads take
    turns. Close it with :meth:`close` or a ``with`` block.

    Example:
        >>> with PythonInterpreter() as interpreter:  # doctest: +SKIP
        ...     interpreter("sum(x * x for x in xs)", {"xs": [1, 2, 3]})
        14

    Args:
        tools: host functions the code may call by name; arguments and results are JSON.
            A tool that raises gives the code a ``ToolError`` with its type and message.
        output_fields: the field names ``SUBMIT`` takes (DSPy's ``[{"name": ...}]`` works).
        timeout: wall-clock seconds one call may run (None: no limit).
        memory_limit_mb: the most the code's Python heap may grow to; past it the call raises
            :class:`SandboxMemoryError`. The process as a whole is killed past this plus
            ``ENGINE_OVERHEAD_MB`` of resident memory.
        deno: the Deno executable (default: the ``deno`` package's, else ``deno`` on PATH).
        deno_dir: Deno's cache holding Pyodide (default: ``$DENO_DIR``, else Deno's own).
        cache_dir: where the start-up snapshot is kept (default ``$DSPEX_CACHE_DIR/sandbox``,
            else ``~/.cache/dspex/sandbox``).
        start_timeout: seconds the sandbox may take to start.
    """

    def __init__(
        self,
        tools: Mapping[str, Callable[..., Any]] | None = None,
        *,
        output_fields: Sequence[str | Mapping[str, Any]] | None = None,
        timeout: float | None = 30.0,
        memory_limit_mb: int = 512,
        deno: str | os.PathLike[str] | None = None,
        deno_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.tools = dict(tools or {})
        for name, tool in self.tools.items():
            _check_name(name, "tool name")
            if not callable(tool):
                raise UserError(f"tool {name!r} is not callable: {tool!r}")
        self.output_fields = _field_names(output_fields)
        if timeout is not None and timeout <= 0:
            raise UserError(f"timeout must be positive seconds or None, not {timeout!r}")
        if memory_limit_mb < 32:
            raise UserError(f"memory_limit_mb must be at least 32, not {memory_limit_mb!r}")
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.start_timeout = start_timeout
        self._deno = deno
        self._deno_dir = deno_dir
        self._cache_dir = cache_dir
        self._process: DenoProcess | None = None
        self._lock = threading.RLock()
        self._next_id = 0
        self._closed = False
        self.start_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The sandbox process's PID while one runs."""
        process = self._process
        return process.pid if process is not None and process.alive else None

    def start(self) -> None:
        """Start the sandbox now rather than on the first call (idempotent)."""
        with self._lock:
            if self._closed:
                raise UserError("this PythonInterpreter is closed; create a new one")
            if self._process is None or not self._process.alive:
                self._process = None
                self._process = self._launch()

    def close(self) -> None:
        """Stop the sandbox process (idempotent); the interpreter cannot be used after."""
        with self._lock:
            self._closed = True
            if self._process is not None:
                self._process.close()
                self._process = None

    shutdown = close  # DSPy's name

    def __enter__(self) -> PythonInterpreter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _launch(self) -> DenoProcess:
        deno = find_deno(self._deno)
        deno_dir = resolve_deno_dir(deno, self._deno_dir)
        pyodide_dir = find_pyodide(deno_dir)
        snapshot = self._snapshot_path(pyodide_dir)
        started = time.monotonic()
        spawn = functools.partial(self._spawn, deno, deno_dir, pyodide_dir)
        try:
            process = spawn(snapshot if snapshot.is_file() else None)
        except SandboxUnavailableError:
            if not snapshot.is_file():
                raise
            # A snapshot this Pyodide cannot load (damaged, or from another build): start
            # without it once, which writes a fresh one.
            snapshot.unlink(missing_ok=True)
            process = spawn(None)
        self.start_seconds = time.monotonic() - started
        return process

    def _snapshot_path(self, pyodide_dir: Path) -> Path:
        if self._cache_dir is not None:
            directory = Path(self._cache_dir)
        elif os.environ.get("DSPEX_CACHE_DIR"):
            directory = Path(os.environ["DSPEX_CACHE_DIR"]) / "sandbox"
        else:
            directory = Path.home() / ".cache" / "dspex" / "sandbox"
        wasm = (pyodide_dir / "pyodide.asm.wasm").stat()
        build = f"{pyodide_dir}|{wasm.st_size}|{wasm.st_mtime_ns}".encode()
        return directory / f"pyodide-{PYODIDE_VERSION}-{hashlib.sha256(build).hexdigest()[:16]}.bin"

    def _spawn(
        self, deno: Path, deno_dir: Path, pyodide_dir: Path, snapshot: Path | None
    ) -> DenoProcess:
        command = deno_command(deno, pyodide_dir, snapshot, self.memory_limit_mb)
        env = sandbox_env(deno_dir)
        try:
            process = DenoProcess(command, env, cwd=pyodide_dir)
        except OSError as exc:
            raise SandboxUnavailableError(f"Deno ({deno}) could not be started: {exc}") from None
        init = {
            "op": "init",
            "snapshot": str(snapshot) if snapshot is not None else None,
            "make_snapshot": snapshot is None,
            "memory_limit_bytes": self.memory_limit_mb * 1024 * 1024,
            "tools": sorted(self.tools),
            "output_fields": self.output_fields,
        }
        deadline = time.monotonic() + self.start_timeout
        late = f"it was not ready within start_timeout={self.start_timeout:g} s"
        try:
            process.send(init)
            while True:
                message = process.receive(deadline, self._hard_cap_mb, late)
                if message.get("type") == "snapshot" and snapshot is None:
                    self._save_snapshot(pyodide_dir, str(message["data"]))
                elif message.get("type") == "ready":
                    return process
                else:
                    raise SandboxCrashError(f"unexpected message at start: {message!r:.200}")
        except (SandboxCrashError, SandboxTimeoutError, SandboxMemoryError) as exc:
            process.kill()
            raise SandboxUnavailableError(
                f"The sandbox (Deno {deno}, Pyodide in {pyodide_dir}) did not start: {exc}"
            ) from None

    def _save_snapshot(self, pyodide_dir: Path, data: str) -> None:
        import base64

        path = self._snapshot_path(pyodide_dir)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_bytes(base64.b64decode(data))
            partial.replace(path)  # atomic: a concurrent start never reads half a snapshot
        except OSError:
            pass  # a read-only cache only costs the next start its speed

    @property
    def _hard_cap_mb(self) -> float:
        return float(self.memory_limit_mb + ENGINE_OVERHEAD_MB)

    # -- running code ----------------------------------------------------------------------

    def __call__(self, code: str, variables: Mapping[str, Any] | None = None) -> Any:
        """Run ``code`` and return DSPy's result (see :meth:`execute`)."""
        return self.execute(code, variables)

    def execute(self, code: str, variables: Mapping[str, Any] | None = None) -> Any:
        """Run ``code`` with ``variables`` defined; return a :class:`FinalOutput` if it
        called ``SUBMIT``, else its last expression's value, else what it printed.

        Raises:
            CodeExecutionError: the code raised (``CodeSyntaxError`` if it does not parse).
            SandboxTimeoutError: it ran past ``timeout``.
            SandboxMemoryError: it went past ``memory_limit_mb``.
            SandboxUnavailableError: Deno or Pyodide is missing.
        """
        return self.run(code, variables).output

    def run(self, code: str, variables: Mapping[str, Any] | None = None) -> Execution:
        """Run ``code`` and return everything it produced as an :class:`Execution`."""
        if not isinstance(code, str):
            raise UserError(f"code must be a str, not {type(code).__name__}")
        variables_json = self._encode_variables(variables or {})
        with self._lock:
            self.start()
            process = self._process
            if process is None:  # start() either sets it or raises
                raise SandboxCrashError("the sandbox did not start")
            self._next_id += 1
            request_id = self._next_id
            started = time.monotonic()
            try:
                process.send(
                    {
                        "op": "execute",
                        "id": request_id,
                        "code": code,
                        "variables_json": variables_json,
                    }
                )
                reply = self._await_result(process, request_id, started)
            except (SandboxTimeoutError, SandboxMemoryError, SandboxCrashError):
                self._process = None  # killed: the next call starts a fresh one
                raise
            return self._outcome(reply, time.monotonic() - started)

    def _encode_variables(self, variables: Mapping[str, Any]) -> str:
        for name in variables:
            _check_name(name, "variable")
        try:
            return json.dumps(dict(variables), default=json_default, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise UserError(f"variables must be JSON values: {exc}") from None

    def _await_result(self, process: DenoProcess, request_id: int, started: float) -> Any:
        deadline = None if self.timeout is None else started + self.timeout
        what = (
            f"the code ran past its {self.timeout:g} s timeout and its sandbox was stopped; "
            "the next call starts a fresh one (the code's variables are gone)"
        )
        while True:
            message = process.receive(deadline, self._hard_cap_mb, what)
            kind = message.get("type")
            if kind == "tool_call":
                process.send(self._answer_tool(message))
            elif kind == "result" and message.get("id") == request_id:
                return message
            else:
                process.kill()
                raise SandboxCrashError(f"unexpected message from the sandbox: {message!r:.200}")

    def _answer_tool(self, message: dict[str, Any]) -> dict[str, Any]:
        """Run a host tool the code called. Only tools passed to this interpreter run: the
        name comes from the sandbox, so it is looked up here, never trusted."""
        reply: dict[str, Any] = {"op": "tool_result", "id": message.get("id")}
        name = message.get("name")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return {
                **reply,
                "ok": False,
                "error": f"no tool named {name!r} was given to the interpreter",
            }
        try:
            call = json.loads(str(message.get("args_json")))
            value = tool(*call["args"], **call["kwargs"])
            return {**reply, "ok": True, "value_json": json.dumps(value, default=json_default)}
        except Exception as exc:  # the code sees the failure; the host carries on
            return {
                **reply,
                "ok": False,
                "error": f"{name}: {type(exc).__name__}: {redact_text(str(exc))}",
            }

    def _outcome(self, reply: dict[str, Any], duration_s: float) -> Execution:
        stdout, stderr = str(reply.get("stdout", "")), str(reply.get("stderr", ""))
        if reply.get("ok"):
            return Execution(
                value=json.loads(reply["value_json"]),
                final=bool(reply.get("final")),
                stdout=stdout,
                stderr=stderr,
                duration_s=duration_s,
            )
        error_type = str(reply.get("error_type", "Error"))
        message = str(reply.get("message", ""))
        if error_type in ("MemoryError", "SandboxError") or "memory limit reached" in message:
            # Past the soft cap (or the runtime itself failed): the heap it filled stays
            # referenced, so this process is done.
            if self._process is not None:
                self._process.kill()
                self._process = None
            if error_type == "SandboxError" and "memory limit" not in message:
                raise SandboxCrashError(f"the sandbox's runtime failed: {message}", stdout=stdout)
            raise SandboxMemoryError(
                f"the code went past its {self.memory_limit_mb} MiB memory limit; its sandbox "
                "was stopped and the next call starts a fresh one (the code's variables are "
                "gone)",
                stdout=stdout,
            )
        error_class = (
            CodeSyntaxError
            if error_type in ("SyntaxError", "IndentationError", "TabError")
            else CodeExecutionError
        )
        raise error_class(error_type, message, str(reply.get("traceback", "")), stdout=stdout)
