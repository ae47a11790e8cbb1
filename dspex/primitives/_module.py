"""``Module``: the base of every dspex program.

A program is a tree of modules whose leaves are predictors (``dspex.Predict``). Its learnable
state (each predictor's instructions, demos and LM config) is saved as versioned JSON, never a
pickle, and never with secrets, sealed by a sha256 manifest that ``load`` verifies (see
``_program_file``).
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dspex.callbacks import Observation, active, current_span, observed
from dspex.errors import DataError, UserError
from dspex.primitives._program_file import (
    MANIFEST_KEY,
    read_program_file,
    seal,
    verify_manifest,
    write_atomic,
)

if TYPE_CHECKING:
    from dspex.lm import LM
    from dspex.modules import Predict
    from dspex.primitives._prediction import Prediction

__all__ = ["STATE_SCHEMA_VERSION", "Module", "Parameter"]

STATE_SCHEMA_VERSION = 1


class Parameter:
    """Marks a module whose state is learned (a predictor), as DSPy's ``Parameter`` does:
    ``Predict`` subclasses it, so this base class finds predictors without importing them."""


class Module:
    """Base class for programs. Subclasses define ``forward`` (and optionally ``aforward``).

    Example:
        >>> import dspex
        >>> class RAGLite(dspex.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.answer = dspex.ChainOfThought("context, question -> answer")
        ...     def forward(self, question, context="none"):
        ...         return self.answer(context=context, question=question)
        >>> [name for name, _ in RAGLite().named_predictors()]
        ['answer.predict']
    """

    # A leaf (a predictor) holds no sub-modules, so walks of the tree need not look inside.
    _leaf = False

    def __init__(self) -> None:
        self._compiled = False

    # -- calling -------------------------------------------------------------------------
    def forward(self, **kwargs: Any) -> Prediction:
        raise NotImplementedError(f"{type(self).__name__} must define forward(**inputs).")

    async def aforward(self, **kwargs: Any) -> Prediction:
        """Async forward. The default runs the sync ``forward`` in a worker thread, so a
        module written only with ``forward`` still works under async evaluation."""
        if type(self).forward is Module.forward:
            raise NotImplementedError(f"{type(self).__name__} must define forward or aforward.")
        return await asyncio.to_thread(self.forward, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        callbacks = active()
        if not callbacks:
            return self.forward(*args, **kwargs)
        with _observed(self, callbacks, kwargs) as done:
            done.result = outputs = self.forward(*args, **kwargs)
        return outputs

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        callbacks = active()
        if not callbacks:
            return await self.aforward(*args, **kwargs)
        with _observed(self, callbacks, kwargs) as done:
            done.result = outputs = await self.aforward(*args, **kwargs)
        return outputs

    # -- structure -----------------------------------------------------------------------
    def named_sub_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every module in the tree, depth first, with its dotted path (``self`` is ``""``)."""
        seen: set[int] = set()

        def walk(obj: Any, path: str) -> Iterator[tuple[str, Module]]:
            if isinstance(obj, Module):
                if id(obj) in seen:
                    return
                seen.add(id(obj))
                yield path, obj
                if obj._leaf:
                    return
                for name, value in vars(obj).items():
                    if name.startswith("_"):
                        continue
                    yield from walk(value, f"{path}.{name}" if path else name)
            elif isinstance(obj, list | tuple):
                for i, item in enumerate(obj):
                    yield from walk(item, f"{path}[{i}]")
            elif isinstance(obj, dict):
                for key, item in obj.items():
                    yield from walk(item, f"{path}[{key!r}]")

        yield from walk(self, prefix)

    def named_predictors(self) -> list[tuple[str, Predict]]:
        """Every predictor in the program with its dotted path, e.g. ``answer.predict``."""
        return [
            (name or "self", cast("Predict", m))
            for name, m in self.named_sub_modules()
            if isinstance(m, Parameter)
        ]

    def predictors(self) -> list[Predict]:
        return [p for _, p in self.named_predictors()]

    def set_lm(self, lm: LM, *, only_unset: bool = False) -> None:
        """Point every predictor at ``lm`` (with ``only_unset``, those without an LM)."""
        for p in self.predictors():
            if not (only_unset and p.lm is not None):
                p.lm = lm

    def deepcopy(self) -> Module:
        """A deep copy. LM clients are shared, not copied (they hold connection pools)."""
        memo: dict[int, Any] = {}
        for p in self.predictors():
            if p.lm is not None:
                memo[id(p.lm)] = p.lm
        return copy.deepcopy(self, memo)

    def reset_copy(self) -> Module:
        """A deep copy with every predictor's demos cleared."""
        new = self.deepcopy()
        for p in new.predictors():
            p.reset()
        return new

    # -- state ---------------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        """JSON-safe learnable state: per predictor, its signature, demos and LM config."""
        from dspex._version import __version__

        return {
            "schema_version": STATE_SCHEMA_VERSION,
            "dspex_version": __version__,
            "program": f"{type(self).__module__}:{type(self).__qualname__}",
            "predictors": {name: p.dump_predictor_state() for name, p in self.named_predictors()},
        }

    def load_state(self, state: dict[str, Any], *, lm: LM | None = None) -> Module:
        """Load state made by :meth:`dump_state` into this program (in place).

        Args:
            state: what :meth:`dump_state` returned.
            lm: every predictor uses this LM; the state's LM configs are not used. Without
                it, a predictor's LM gets its model from the state and its endpoint from
                this process (see :meth:`load`).
        """
        _check_schema(state)
        saved = state.get("predictors", {})
        mine = dict(self.named_predictors())
        if set(saved) != set(mine):
            raise DataError(
                f"Saved program has predictors {sorted(saved)} but this program has "
                f"{sorted(mine)}. Load it into an instance of {state.get('program')}."
            )
        # All or nothing: a predictor whose state does not load leaves every one as it was.
        before = [(p, dict(vars(p))) for p in mine.values()]
        try:
            for name, p in mine.items():
                p.load_predictor_state(saved[name], lm=lm)
        except BaseException:
            for p, attrs in before:
                vars(p).clear()
                vars(p).update(attrs)
            raise
        return self

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        format: str = "dspex",
        save_program: bool = False,
    ) -> Path:
        """Write the program's state as JSON with a sha256 manifest, atomically (a temp file
        and a rename: readers never see half a file).

        The file stays readable; its top-level ``"manifest"`` holds the sha256 of the state's
        canonical JSON, which :meth:`load` checks. No API key is ever written.

        ``format="dspy"`` writes DSPy 3.4's saved-program JSON instead (no manifest, no
        endpoint or credentials), which ``dspy_program.load(path)`` reads. ``save_program``
        is refused: DSPy's whole-program save is a pickle, which dspex neither writes nor
        loads; save the state and rebuild the program from its code.

        Example:
            >>> import dspex, json, pathlib, tempfile
            >>> path = dspex.Predict("question -> answer").save(
            ...     pathlib.Path(tempfile.mkdtemp()) / "qa.json")
            >>> json.loads(path.read_text())["manifest"]["algorithm"]
            'sha256'
        """
        path = Path(path)
        if save_program:
            raise UserError(
                f"save({str(path)!r}, save_program=True): a whole-program save is a pickle, "
                "which dspex never writes (loading one runs code). Save the state with "
                "save(path) and rebuild the program from its code before load(path)."
            )
        if format not in ("dspex", "dspy"):
            raise UserError(f"save(format={format!r}): use format='dspex' or format='dspy'.")
        if path.suffix != ".json":
            raise UserError(
                f"save({str(path)!r}): dspex saves programs as JSON; use a path ending in .json."
            )
        if format == "dspy":
            import json

            from dspex.primitives._dspy_format import to_dspy

            state = to_dspy(self.dump_state(), self.named_predictors())
            write_atomic(path, json.dumps(state, indent=2, ensure_ascii=False) + "\n")
        else:
            write_atomic(path, seal(self.dump_state()))
        return path

    def load(
        self, path: str | os.PathLike[str], *, lm: LM | None = None, verify: bool = True
    ) -> Module:
        """Load a program saved by :meth:`save` into this program (in place); returns ``self``.

        The file is checked against its sha256 manifest before anything is loaded: an edited
        or damaged file, or one without a manifest, raises ``ProgramIntegrityError``.

        Where prompts go is decided by this process, never by the file: ``api_base``,
        ``base_url``, headers, transport and credentials saved in it are ignored. With
        ``lm``, every predictor uses ``lm``. Otherwise a predictor saved with an LM keeps the
        file's model name and request parameters, sent through the predictor's own LM or the
        one in ``dspex.context``/``dspex.configure`` when that LM may carry the model (a test
        double, an ``api_base`` this process set, or the same provider), else through a new
        ``dspex.LM(model)`` on the provider's default endpoint, its key from the provider's
        environment variable (e.g. ``OPENAI_API_KEY``).

        A file saved by DSPy 3.x (``dspy_program.save("p.json")``) loads too: its
        instructions, field descriptions and prefixes, demos and per-predictor model settings
        go into this program, matched by predictor name and field position. DSPy writes no
        manifest, so ``verify`` does not apply to it; ``save()`` it to give it one.

        Args:
            path: a ``.json`` file written by :meth:`save` (or by DSPy's ``save``).
            lm: the LM every predictor uses; the file's LM settings are not used.
            verify: ``False`` skips the manifest check. Use it only for a file you edited
                by hand (or one saved by dspex 0.1.0, which wrote no manifest) and trust;
                ``save()`` it again to give it a manifest.

        Raises:
            ProgramIntegrityError: the file does not match its manifest, or has none.
            DataError: the file is not JSON (a pickle, say), is of another schema version,
                or holds other predictors than this program.

        Example:
            >>> import dspex, pathlib, tempfile
            >>> from dspex.testing import DummyLM
            >>> path = dspex.Predict("question -> answer").save(
            ...     pathlib.Path(tempfile.mkdtemp()) / "qa.json")
            >>> lm = DummyLM([{"answer": "4"}])
            >>> dspex.Predict("question -> answer").load(path, lm=lm)(question="2+2?").answer
            '4'
        """
        state = read_program_file(path, verify=verify)
        from dspex.primitives._dspy_format import from_dspy, is_dspy_state

        if is_dspy_state(state):  # DSPy writes no manifest: there is nothing to verify
            body = from_dspy(
                state,
                self.named_predictors(),
                path=str(path),
                program=f"{type(self).__module__}:{type(self).__qualname__}",
            )
            return self.load_state(body, lm=lm)
        _check_schema(state)
        if verify:
            verify_manifest(state, path)
        body = {k: v for k, v in state.items() if k != MANIFEST_KEY}
        return self.load_state(body, lm=lm)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={type(m).__name__}" for n, m in self.named_predictors())
        return f"{type(self).__name__}({inner})"


def _check_schema(state: dict[str, Any]) -> None:
    version = state.get("schema_version")
    if version != STATE_SCHEMA_VERSION:
        raise DataError(
            f"Saved program has schema_version {version!r}; this dspex reads version "
            f"{STATE_SCHEMA_VERSION}. Re-save it with a matching dspex version."
        )


def _observed(
    module: Module, callbacks: tuple[Any, ...], inputs: dict[str, Any]
) -> AbstractContextManager[Observation]:
    """The module's span, named by its dotted path within the top-level program."""
    parent = current_span()
    paths = parent.root_paths if parent is not None else {}
    path = paths.get(id(module))
    if path is None:  # a top-level call, or a module created on the fly inside forward()
        prefix = parent.name if parent is not None and parent.kind == "module" else ""
        paths = {id(m): p for p, m in module.named_sub_modules(prefix)}
        path = paths[id(module)]
    return observed(
        callbacks,
        "module",
        path,
        (module, inputs),
        (module,),
        root_paths=paths,
        module_class=type(module).__name__,
    )
