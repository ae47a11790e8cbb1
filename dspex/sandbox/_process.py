"""One Deno process speaking JSON lines, watched for time and memory.

The process's stdout is read by a thread into a queue; the caller waits on the queue in short
slices and, between them, checks the wall-clock deadline and the process's resident memory.
Past either the process is killed (by its PID) and the caller gets the matching error.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import subprocess
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any, NoReturn, cast

from dspex.sandbox._errors import SandboxCrashError, SandboxMemoryError, SandboxTimeoutError

__all__ = ["DenoProcess", "resident_mb"]

_POLL_S = 0.05
_STDERR_KEEP = 16_384
# What V8 prints when the JS heap reaches --max-old-space-size.
_V8_OOM = ("JavaScript heap out of memory", "Fatal JavaScript out of memory", "Reached heap limit")


def resident_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MiB, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)
    except Exception:  # psutil missing, or the process just exited
        return None


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()  # SIGKILL to this PID: Deno has no permission to start children
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if process.stdin is not None:  # stdout and stderr are closed by their reading threads
        with contextlib.suppress(OSError):
            process.stdin.close()


class DenoProcess:
    """A started sandbox process: send JSON messages, receive them with limits enforced."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        self.pid = self._process.pid
        # All three are pipes (PIPE above), never None.
        self._stdin = cast(IO[bytes], self._process.stdin)
        self._stdout = cast(IO[bytes], self._process.stdout)
        self._stderr_pipe = cast(io.BufferedReader, self._process.stderr)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr = bytearray()
        threading.Thread(target=self._read_stdout, daemon=True, name="dspex-sandbox-out").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="dspex-sandbox-err").start()
        # An interpreter dropped without close() must not leave its process running.
        self._finalizer = weakref.finalize(self, _kill, self._process)

    def _read_stdout(self) -> None:
        # A killed process's pipes reach EOF, which ends the reading threads; they close them.
        with contextlib.suppress(OSError, ValueError):
            for line in iter(self._stdout.readline, b""):
                self._lines.put(line)
        self._stdout.close()
        self._lines.put(None)

    def _read_stderr(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: self._stderr_pipe.read1(4096), b""):
                self._stderr += chunk
                del self._stderr[:-_STDERR_KEEP]
        self._stderr_pipe.close()

    def stderr_tail(self, limit: int = 2000) -> str:
        return self._stderr[-limit:].decode("utf-8", errors="replace").strip()

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        try:
            self._stdin.write(data)
            self._stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.kill()
            raise SandboxCrashError(self._exit_message("stopped reading its input")) from None

    def receive(
        self, deadline: float | None, memory_limit_mb: float | None, what: str
    ) -> dict[str, Any]:
        """The next message; kills the process and raises past ``deadline`` (a
        ``time.monotonic()`` value) or ``memory_limit_mb`` of resident memory."""
        while True:
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            try:
                line = self._lines.get(timeout=max(wait, 0.0))
            except queue.Empty:
                line = b""
            if line is None:
                self._exited()
            if line:
                return self._parse(line)
            if deadline is not None and time.monotonic() >= deadline:
                self.kill()
                raise SandboxTimeoutError(what)
            if memory_limit_mb is not None:
                used = resident_mb(self.pid)
                if used is not None and used > memory_limit_mb:
                    self.kill()
                    raise SandboxMemoryError(
                        f"the sandbox process used {used:.0f} MiB, past its hard cap of "
                        f"{memory_limit_mb:.0f} MiB, and was stopped"
                    )

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.kill()
            raise SandboxCrashError(
                "the sandbox wrote something that is not a protocol message and was stopped: "
                f"{line[:200]!r}"
            )
        return message

    def _exited(self) -> NoReturn:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        stderr = self.stderr_tail()
        self.kill()
        if any(marker in stderr for marker in _V8_OOM):
            raise SandboxMemoryError(
                "the sandbox's JavaScript heap reached its cap and the process stopped"
            )
        raise SandboxCrashError(self._exit_message("exited"))

    def _exit_message(self, what: str) -> str:
        code = self._process.poll()
        stderr = self.stderr_tail()
        return f"the sandbox process {what} (exit code {code})" + (f": {stderr}" if stderr else "")

    def kill(self) -> None:
        """Stop the process by its PID now (idempotent)."""
        self._finalizer()

    def close(self, grace_s: float = 2.0) -> None:
        """Ask the process to exit; kill it if it has not within ``grace_s``."""
        if self.alive:
            with contextlib.suppress(Exception):
                self.send({"op": "shutdown"})
                self._stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=grace_s)
        self.kill()
