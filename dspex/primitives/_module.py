"""``Module``: the base of every dspex program.

A program is a tree of modules whose leaves are predictors (``dspex.Predict``). Its learnable
state (each predictor's instructions, demos and LM config) is saved as versioned JSON, never a
pickle, and never with secrets, sealed by a sha256 manifest that ``load`` verifies (see
``_program_file``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from dspex.callbacks import Observation, active, current_span, observed
from dspex.errors import DataError, UserError
from dspex.primitives._prediction import Prediction
from dspex.primitives._program_file import (
    MANIFEST_KEY,
    read_program_file,
    seal,
    verify_manifest,
    write_atomic,
)
from dspex.primitives._usage import UsageSink, collect_usage

if TYPE_CHECKING:
    from dspex.lm import LM
    from dspex.modules import Predict
    from dspex.primitives._example import Example

__all__ = ["STATE_SCHEMA_VERSION", "Module", "Parameter"]

STATE_SCHEMA_VERSION = 1

_log = logging.getLogger("dspex.module")


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
        if self._leaf:  # a predictor reports its own usage
            return self._call(args, kwargs)
        with collect_usage() as sink:
            outputs = self._call(args, kwargs)
        _attach_usage(outputs, sink)
        return outputs

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        if self._leaf:
            return await self._acall(args, kwargs)
        with collect_usage() as sink:
            outputs = await self._acall(args, kwargs)
        _attach_usage(outputs, sink)
        return outputs

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prediction:
        callbacks = active()
        if not callbacks:
            return self.forward(*args, **kwargs)
        with _observed(self, callbacks, kwargs) as done:
            done.result = outputs = self.forward(*args, **kwargs)
        return outputs

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prediction:
        callbacks = active()
        if not callbacks:
            return await self.aforward(*args, **kwargs)
        with _observed(self, callbacks, kwargs) as done:
            done.result = outputs = await self.aforward(*args, **kwargs)
        return outputs

    # -- structure -----------------------------------------------------------------------
    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """Every learnable part (predictor) with its path, as DSPy names them: ``"self"`` for
        a predictor itself, ``answer.predict``, ``hops[0]``, ``tools['search']``.

        Attributes, list and tuple items and dict values are searched; a sub-module marked
        compiled (``_compiled = True``) is kept frozen and left out; a predictor reachable
        by two paths is listed once.
        """
        seen: set[int] = set()
        found: list[tuple[str, Parameter]] = []

        def add(name: str, value: Any) -> None:
            if isinstance(value, Parameter):
                if id(value) not in seen:
                    seen.add(id(value))
                    found.append((name, value))
            elif isinstance(value, Module):
                if getattr(value, "_compiled", False) or id(value) in seen:
                    return
                seen.add(id(value))
                for attr, item in vars(value).items():
                    add(f"{name}.{attr}", item)
            elif isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    add(f"{name}[{i}]", item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    add(f"{name}['{key}']", item)

        if isinstance(self, Parameter):
            add("self", self)
            return found
        seen.add(id(self))
        for attr, value in vars(self).items():
            add(attr, value)
        return found

    def parameters(self) -> list[Parameter]:
        """The learnable parts of :meth:`named_parameters`, without their names."""
        return [p for _, p in self.named_parameters()]

    def named_sub_modules(
        self, type_: type | None = None, skip_compiled: bool = False
    ) -> Iterator[tuple[str, Module]]:
        """Every module in the tree, breadth first, named as DSPy names them: ``"self"``,
        ``"self.draft"``, ``"self.hops[0]"``, ``"self.tools[search]"``; each once.

        Args:
            type_: only modules of this type (default: every ``Module``).
            skip_compiled: do not look inside modules marked compiled.
        """
        want = type_ or Module
        queue: deque[tuple[str, Any]] = deque([("self", self)])
        seen = {id(self)}
        while queue:
            name, item = queue.popleft()
            if isinstance(item, want):
                yield name, cast(Module, item)
            if isinstance(item, Module):
                if skip_compiled and getattr(item, "_compiled", False):
                    continue
                children: Iterable[tuple[str, Any]] = (
                    (f"{name}.{k}", v) for k, v in vars(item).items()
                )
            elif isinstance(item, list | tuple):
                children = ((f"{name}[{i}]", v) for i, v in enumerate(item))
            elif isinstance(item, dict):
                children = ((f"{name}[{k}]", v) for k, v in item.items())
            else:
                continue
            for child_name, child in children:
                if id(child) not in seen:
                    seen.add(id(child))
                    queue.append((child_name, child))

    def named_predictors(self) -> list[tuple[str, Predict]]:
        """Every predictor in the program with its path (:meth:`named_parameters`' names)."""
        return [(n, cast("Predict", p)) for n, p in self.named_parameters()]

    def predictors(self) -> list[Predict]:
        return [p for _, p in self.named_predictors()]

    def set_lm(self, lm: LM, *, only_unset: bool = False) -> None:
        """Point every predictor at ``lm`` (with ``only_unset``, those without an LM)."""
        for p in self.predictors():
            if not (only_unset and p.lm is not None):
                p.lm = lm

    def get_lm(self) -> LM | None:
        """The LM every predictor uses (``None`` when none has one of its own).

        Raises:
            UserError: (a ``ValueError``) the predictors use different LMs.
        """
        lms = {id(p.lm): p.lm for p in self.predictors()}
        if len(lms) == 1:
            return next(iter(lms.values()))
        if not lms:
            return None
        raise UserError(
            "Multiple LMs are being used in the module. There's no unique LM to return; "
            "read each predictor's .lm from named_predictors(), or call set_lm(lm) first."
        )

    def deepcopy(self) -> Self:
        """A deep copy. LM clients are shared, not copied (they hold connection pools); an
        attribute that cannot be deep-copied (a lock, a client) is copied shallowly, or
        shared, as DSPy's ``deepcopy`` does."""
        try:
            return copy.deepcopy(self, self._shared_lms())
        except Exception:
            return self._copy_by_attribute(self._shared_lms())

    def _shared_lms(self) -> dict[int, Any]:
        """A deepcopy memo that maps each predictor's LM to itself, so copies share it."""
        return {id(p.lm): p.lm for p in self.predictors() if p.lm is not None}

    def _copy_by_attribute(self, memo: dict[int, Any]) -> Self:
        new = self.__class__.__new__(self.__class__)
        for attr, value in vars(self).items():
            if isinstance(value, Module):
                copied: Any = value.deepcopy()
            else:
                try:
                    copied = copy.deepcopy(value, memo)
                except Exception:
                    try:
                        copied = copy.copy(value)
                    except Exception:
                        copied = value
                    _log.warning(
                        "deepcopy: attribute %r of %s cannot be deep-copied; the copy %s it.",
                        attr,
                        type(self).__name__,
                        "shares" if copied is value else "holds a shallow copy of",
                    )
            object.__setattr__(new, attr, copied)
        return new

    def reset_copy(self) -> Self:
        """A deep copy with every predictor's learned state (demos) cleared; predictors keep
        their own LMs."""
        new = self.deepcopy()
        for p in new.predictors():
            # The learned state only: unlike DSPy's reset_copy, each predictor keeps its LM.
            p.demos = []
            for attr in ("traces", "train"):
                if hasattr(p, attr):
                    setattr(p, attr, [])
        return new

    def batch(
        self,
        examples: Sequence[Example],
        num_threads: int | None = None,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: int = 120,
        straggler_limit: int = 3,
    ) -> Any:
        """Run the program on every example's inputs in parallel threads, as DSPy's ``batch``.

        Each thread sees this thread's ``dspex.context`` settings. An example whose call
        raises gets ``None`` as its result; when ``max_errors`` calls have failed the batch
        stops and raises ``RuntimeError`` (from the last error).

        Args:
            examples: examples with declared inputs (``with_inputs``).
            num_threads: threads to use (default: 8, at most one per example).
            max_errors: failures tolerated before stopping (default: 10).
            return_failed_examples: also return the failed examples and their exceptions.
            provide_traceback: log each failure with its traceback.
            disable_progress_bar, timeout, straggler_limit: accepted for DSPy compatibility;
                dspex shows no progress bar and does not re-submit slow calls (the LM layer
                has its own timeouts and retries).

        Returns:
            The results in the examples' order; with ``return_failed_examples``, the tuple
            ``(results, failed_examples, exceptions)``.
        """
        from dspex.primitives._batch import run_batch

        return run_batch(
            self,
            examples,
            num_threads=num_threads,
            max_errors=max_errors,
            return_failed_examples=return_failed_examples,
            provide_traceback=provide_traceback,
        )

    # -- state ---------------------------------------------------------------------------
    def _rebuild_spec(self) -> tuple[str, dict[str, Any]]:
        """``("module:Class", keyword arguments)`` that build a program of this structure
        (whole-program saves, the MLflow flavor). Built-in predictors add their signature."""
        cls = type(self)
        return f"{cls.__module__}:{cls.__qualname__}", {}

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
        endpoint or credentials), which ``dspy_program.load(path)`` reads.

        ``save_program=True`` saves the whole program to the directory ``path``: its state
        and its class (``module:Class``) in a sealed ``program.json``, which
        :func:`dspex.load` rebuilds. Unlike DSPy's, this is no pickle: the class must be
        importable and constructible without arguments when loaded.

        Example:
            >>> import dspex, json, pathlib, tempfile
            >>> path = dspex.Predict("question -> answer").save(
            ...     pathlib.Path(tempfile.mkdtemp()) / "qa.json")
            >>> json.loads(path.read_text())["manifest"]["algorithm"]
            'sha256'
        """
        path = Path(path)
        if save_program:
            if format != "dspex":
                raise UserError(
                    "save(..., save_program=True, format='dspy'): DSPy's whole-program save "
                    "is a pickle, which dspex never writes; save the state in DSPy's format "
                    "with save(path.json, format='dspy')."
                )
            from dspex.primitives._whole import save_program as save_whole

            return save_whole(self, path)
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


def _attach_usage(outputs: Any, sink: UsageSink) -> None:
    """Give a module's output the usage of every LM call made inside it, as DSPy does
    (``pred.get_lm_usage()``); a ``(prediction, trace)`` pair gets it on the prediction."""
    pred = outputs[0] if isinstance(outputs, tuple) and outputs else outputs
    if isinstance(pred, Prediction) and sink.by_model:
        pred.set_lm_usage(dict(sink.by_model))


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
        paths = {id(m): p for p, m in _module_paths(module, prefix)}
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


def _module_paths(root: Module, prefix: str) -> Iterator[tuple[str, Module]]:
    """Every module under ``root``, depth first, by the dotted path that names its spans and
    trace rows (``draft.predict``; ``root`` itself is ``prefix``)."""
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
                if not name.startswith("_"):
                    yield from walk(value, f"{path}.{name}" if path else name)
        elif isinstance(obj, list | tuple):
            for i, item in enumerate(obj):
                yield from walk(item, f"{path}[{i}]")
        elif isinstance(obj, dict):
            for key, item in obj.items():
                yield from walk(item, f"{path}[{key!r}]")

    yield from walk(root, prefix)
