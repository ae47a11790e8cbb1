"""Finding Deno and Pyodide, and the command line that starts the sandbox.

Deno comes from the ``deno`` package on PyPI (a dependency of dspex); Pyodide from the npm
registry, fetched once into Deno's cache (``DENO_DIR``) by ``python -m dspex.sandbox prefetch``
or ``deno cache npm:pyodide@<version>``. The sandbox runs with ``--cached-only``: it never
fetches anything, so a pre-filled ``DENO_DIR`` is all an offline machine needs.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

from dspex.sandbox._errors import SandboxUnavailableError

__all__ = [
    "PYODIDE_VERSION",
    "RUNNER",
    "deno_command",
    "find_deno",
    "find_pyodide",
    "prefetch",
    "resolve_deno_dir",
    "sandbox_env",
]

PYODIDE_VERSION = "0.28.3"
RUNNER = Path(__file__).with_name("runner.js")

_INSTALL_DENO = (
    "Install it with `pip install deno` (a dependency of dspex: reinstalling dspex brings it), "
    "or pass PythonInterpreter(deno='/path/to/deno')."
)


def _prefetch_hint(deno_dir: Path) -> str:
    return (
        f"Fetch it once with `python -m dspex.sandbox prefetch` (or "
        f"`DENO_DIR={deno_dir} deno cache npm:pyodide@{PYODIDE_VERSION}`); on a machine without "
        "network access, copy a DENO_DIR pre-filled that way and point DENO_DIR at it "
        "(docs/code-execution.md)."
    )


def find_deno(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The Deno executable: ``explicit``, else the ``deno`` package's, else ``deno`` on PATH."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        found = shutil.which(str(explicit))
        if found is None:
            raise SandboxUnavailableError(
                f"Deno was not found at {str(explicit)!r}. {_INSTALL_DENO}"
            )
        return Path(found)
    try:
        from deno import find_deno_bin

        return Path(find_deno_bin())
    except (ImportError, FileNotFoundError, OSError):
        pass
    found = shutil.which("deno")
    if found is None:
        raise SandboxUnavailableError(f"Deno is not installed. {_INSTALL_DENO}")
    return Path(found)


def sandbox_env(deno_dir: Path) -> dict[str, str]:
    """The whole environment the Deno process gets: nothing of the host's but what locates
    the cache (the sandboxed code cannot read even this: it has no ``--allow-env``)."""
    env = {"DENO_DIR": str(deno_dir), "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}
    for key in ("NPM_CONFIG_REGISTRY", "SYSTEMROOT"):  # the cache's folder name; Windows
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def resolve_deno_dir(deno: Path, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Deno's cache: ``explicit``, else ``$DENO_DIR``, else where this Deno keeps it."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("DENO_DIR"):
        return Path(os.environ["DENO_DIR"]).expanduser().resolve()
    return _default_deno_dir(str(deno))


@functools.lru_cache(maxsize=8)
def _default_deno_dir(deno: str) -> Path:
    env = {k: v for k, v in os.environ.items() if k != "DENO_DIR"}
    env["DENO_NO_UPDATE_CHECK"] = "1"
    try:
        out = subprocess.run(
            [deno, "info", "--json"], capture_output=True, text=True, timeout=60, env=env
        )
        return Path(json.loads(out.stdout)["denoDir"]).resolve()
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        raise SandboxUnavailableError(
            f"Could not ask Deno ({deno}) where its cache is ({exc}); set DENO_DIR."
        ) from None


def find_pyodide(deno_dir: Path) -> Path:
    """The folder of Pyodide's npm package inside ``deno_dir`` (the one folder the sandbox
    may read)."""
    # npm/<registry host>/pyodide/<version>: the host is the configured npm registry.
    for candidate in sorted(deno_dir.glob(f"npm/*/pyodide/{PYODIDE_VERSION}")):
        if (candidate / "pyodide.asm.wasm").is_file():
            return candidate.resolve()
    raise SandboxUnavailableError(
        f"Pyodide {PYODIDE_VERSION} is not in Deno's cache (DENO_DIR={deno_dir}). "
        + _prefetch_hint(deno_dir)
    )


def deno_command(
    deno: Path, pyodide_dir: Path, snapshot: Path | None, memory_limit_mb: int
) -> list[str]:
    """``deno run`` with no permission but reading Pyodide's files (and the start snapshot)."""
    readable = [str(pyodide_dir)] + ([str(snapshot)] if snapshot is not None else [])
    return [
        str(deno),
        "run",
        "--quiet",
        "--no-prompt",  # an ungranted permission fails at once instead of asking
        "--cached-only",  # never fetch: DENO_DIR must already hold Pyodide
        "--no-config",  # a deno.json in the working directory grants nothing
        "--no-lock",
        "--no-remote",
        f"--allow-read={','.join(readable)}",
        "--deny-write",
        "--deny-net",
        "--deny-env",
        "--deny-run",
        "--deny-ffi",
        "--deny-sys",
        f"--v8-flags=--max-old-space-size={memory_limit_mb}",
        str(RUNNER),
    ]


def prefetch(
    deno: str | os.PathLike[str] | None = None, deno_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Fetch Pyodide from the npm registry into Deno's cache; return Pyodide's folder there."""
    deno_path = find_deno(deno)
    directory = resolve_deno_dir(deno_path, deno_dir)
    env = {**os.environ, "DENO_DIR": str(directory), "DENO_NO_UPDATE_CHECK": "1"}
    result = subprocess.run(
        [str(deno_path), "cache", "--quiet", "--no-config", f"npm:pyodide@{PYODIDE_VERSION}"],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise SandboxUnavailableError(
            f"`deno cache npm:pyodide@{PYODIDE_VERSION}` failed (DENO_DIR={directory}): "
            f"{result.stderr.strip()[-2000:]}"
        )
    return find_pyodide(directory)
