"""MLflow traces of dspex calls: :func:`autolog`, and the traces of an optimization run.

Spans are built with MLflow's public tracing API (``mlflow.start_span_no_context`` and the
span objects it returns), never by pickling a program (``mlflow.dspy`` does, and its traces
can carry an LM's API key). Module calls are ``CHAIN`` spans (``AGENT`` for the tool-using
ReAct and CodeAct), adapter steps ``PARSER``, LM calls ``CHAT_MODEL`` with token usage, tools
``TOOL``, evaluations ``CHAIN``. Inputs and outputs are redacted like every trace row.

The parquet trace store stays the system of record (``dspex traces sql``): MLflow traces are
a view for its UI, made only while autolog is on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dspex._redact import redact_text
from dspex._settings import configure, context, current
from dspex.errors import UserError
from dspex.observability._attributes import provider_of, redacted_value, request_model
from dspex.observability._bridge import Attributes, Kind, SpanBridge

if TYPE_CHECKING:
    from dspex.callbacks import Span
    from dspex.lm import LMRequest, LMResponse

__all__ = ["ENV", "MlflowTracer", "autolog", "autolog_settings", "run_traces"]

_AGENTS = frozenset({"ReAct", "CodeAct"})
_SPAN_TYPES = {
    "adapter": "PARSER",
    "lm": "CHAT_MODEL",
    "tool": "TOOL",
    "evaluate": "CHAIN",
    "retrieve": "RETRIEVER",
    "embed": "EMBEDDING",
}


@dataclass(frozen=True)
class AutologSettings:
    """What :func:`autolog` turned on (``None`` when it is off)."""

    log_inputs_outputs: bool
    log_traces_from_compile: bool
    compile_trace_sample: int


class MlflowTracer(SpanBridge):
    """A callback that makes an MLflow trace of every top-level dspex call.

    Args:
        log_inputs_outputs: record inputs and outputs (redacted) on each span.
        run_id: link each trace to this MLflow run; ``None``: the active run, if any.
        experiment_id: the experiment the traces go to; ``None``: the active one.
        max_traces: stop after this many traces (``None``: no limit).
    """

    def __init__(
        self,
        *,
        log_inputs_outputs: bool = True,
        run_id: str | None = None,
        experiment_id: str | None = None,
        max_traces: int | None = None,
    ) -> None:
        super().__init__()
        import mlflow

        # MLflow prices LM spans with litellm's table; like dspex, never fetch it online.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        self._mlflow = mlflow
        self.log_inputs_outputs = log_inputs_outputs
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.max_traces = max_traces
        self._count_lock = threading.Lock()
        self.traces_started = 0

    def _accepts(self, span: Span) -> bool:
        with self._count_lock:
            if self.max_traces is not None and self.traces_started >= self.max_traces:
                return False
            self.traces_started += 1
            return True

    def _start(
        self,
        kind: Kind,
        name: str,
        parent: Any | None,
        attributes: Attributes,
        content: Any,
        started_at: float | None,
    ) -> Any:
        mlflow = self._mlflow
        if parent is None:  # inside the caller's own @mlflow.trace span, if there is one
            parent = mlflow.get_current_active_span()
        metadata = None
        if parent is None and self.run_id is not None:
            metadata = {"mlflow.sourceRun": self.run_id}
        span_type = _span_type(kind, attributes)
        inputs = _inputs(kind, content) if self.log_inputs_outputs else None
        return mlflow.start_span_no_context(
            name,
            span_type=span_type,
            parent_span=parent,
            inputs=inputs,
            attributes=dict(attributes),
            metadata=metadata,
            experiment_id=self.experiment_id if parent is None else None,
            start_time_ns=int(started_at * 1e9) if started_at is not None else None,
        )

    def _end(
        self,
        kind: Kind,
        handle: Any,
        attributes: Attributes,
        content: Any,
        error: BaseException | None,
    ) -> None:
        from mlflow.entities import SpanEvent, SpanStatus, SpanStatusCode

        attrs: dict[str, Any] = dict(attributes)
        if kind == "lm":
            attrs.update(_chat_attributes(*content))
        outputs = None
        if self.log_inputs_outputs and error is None and content is not None:
            outputs = _outputs(kind, content)
        status = None
        if error is not None:
            message = redact_text(str(error))[:2000]
            details: dict[str, Any] = {
                "exception.type": type(error).__name__,
                "exception.message": message,
            }
            # SpanEvent is a dataclass; MLflow's _MlflowObject base leaves from_proto abstract.
            handle.add_event(SpanEvent("exception", attributes=details))  # type: ignore[abstract]
            status = SpanStatus(SpanStatusCode.ERROR, description=message)
        handle.end(outputs=outputs, attributes=attrs, status=status)

    def _event(self, handle: Any, name: str, attributes: Attributes) -> None:
        from mlflow.entities import SpanEvent

        handle.add_event(SpanEvent(name, attributes=dict(attributes)))  # type: ignore[abstract]


def _span_type(kind: Kind, attributes: Attributes) -> str:
    if kind == "module":
        return "AGENT" if attributes.get("dspex.module.class") in _AGENTS else "CHAIN"
    return _SPAN_TYPES[kind]


def _inputs(kind: Kind, content: Any) -> Any:
    if content is None or kind == "adapter":  # its messages are the LM span's inputs
        return None
    if kind == "lm":
        request: LMRequest = content
        params = {k: v for k, v in request.kwargs.items() if isinstance(v, str | int | float)}
        return redacted_value(
            {"model": request_model(request.model), "messages": list(request.messages), **params}
        )
    return redacted_value(content)


def _outputs(kind: Kind, content: Any) -> Any:
    if kind == "lm":
        _, response = content
        return None if response is None else redacted_value(_choices(response))
    if kind == "retrieve":  # MLflow's document shape, which its retriever view reads
        return redacted_value(
            [
                {"id": p["id"], "page_content": p["text"], "metadata": p["metadata"]}
                | {"score": p["score"]}
                for p in content
            ]
        )
    if hasattr(content, "to_dict"):  # a Prediction
        return redacted_value(content.to_dict())
    return redacted_value(content)


def _choices(response: LMResponse) -> dict[str, Any]:
    """The response in OpenAI's chat-completion shape, which MLflow's chat view reads."""
    reasons = list(response.finish_reasons)
    return {
        "model": request_model(response.model),
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reasons[i] if i < len(reasons) else "stop",
            }
            for i, text in enumerate(response.outputs)
        ],
    }


def _chat_attributes(request: LMRequest, response: LMResponse | None) -> dict[str, Any]:
    """MLflow's own LM attributes: model, provider and token usage (summed per trace)."""
    attrs: dict[str, Any] = {
        "mlflow.llm.model": request_model(request.model),
        "mlflow.llm.provider": provider_of(request.model),
    }
    if response is not None:
        usage = response.usage
        prompt = usage.prompt_tokens + usage.cached_prompt_tokens
        completion = usage.completion_tokens + usage.cached_completion_tokens
        attrs["mlflow.chat.tokenUsage"] = {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
        }
        # dspex's own price (a cache hit is free), so MLflow does not price the call again;
        # where dspex knows no price, MLflow tries litellm's table (offline, see __init__).
        if usage.cost is not None:
            attrs["mlflow.llm.cost"] = _cost(request.model, usage)
    return attrs


def _cost(model: str, usage: Any) -> dict[str, float]:
    """MLflow's cost attribute: dollars in, out and in total (cached tokens cost nothing)."""
    from dspex.lm._pricing import price_of

    cost: dict[str, float] = {"total_cost": float(usage.cost)}
    price = price_of(model)
    if price is not None:
        cost["input_cost"] = usage.prompt_tokens * price[0]
        cost["output_cost"] = usage.completion_tokens * price[1]
    return cost


# -- autolog ---------------------------------------------------------------------------------
_lock = threading.Lock()
_settings: AutologSettings | None = None
_tracer: MlflowTracer | None = None


def autolog(
    *,
    log_traces: bool = True,
    log_traces_from_compile: bool = False,
    disable: bool = False,
    log_inputs_outputs: bool = True,
    compile_trace_sample: int = 20,
    tracking_uri: str | None = None,
) -> None:
    """Make every dspex program call in this process an MLflow trace (the UI's Traces tab,
    ``mlflow.search_traces()``), until ``autolog(disable=True)``.

    Each top-level call (a module, an evaluation, a direct LM call) is one trace whose spans
    are the modules, adapter steps, LM calls (with token usage) and tool calls under it. A
    call made while an MLflow run is active is linked to that run. Inside an optimization
    flow run in this process (``optimizer.compile(...)``) traces go to the flow's MLflow run
    and experiment; by default only the first ``compile_trace_sample`` top-level calls of
    the run are traced, not its thousands of trial calls (``log_traces_from_compile=True``
    traces them all; ``$DSPEX_MLFLOW_TRACES`` asks the same of a process that never calls
    autolog, like ``dspex optimize``). Every call is in the parquet traces either way.

    Args:
        log_traces: make traces (``False`` is the same as ``disable=True``).
        log_traces_from_compile: trace every call of an optimization run.
        disable: turn autolog off.
        log_inputs_outputs: record inputs, outputs and prompts on spans (always redacted:
            credential keys dropped, registered secrets replaced).
        compile_trace_sample: how many top-level calls of each optimization run are traced
            when ``log_traces_from_compile`` is ``False`` (0: none).
        tracking_uri: where traces go (see :func:`dspex.mlflow.configure_tracking`: this
            argument, else ``$MLFLOW_TRACKING_URI``, else the runs directory's SQLite file).

    Raises:
        UserError: ``compile_trace_sample`` is negative.

    Example:
        >>> import dspex, dspex.mlflow
        >>> dspex.mlflow.autolog()  # doctest: +SKIP
        >>> qa = dspex.ChainOfThought("question -> answer")  # doctest: +SKIP
        >>> qa(question="What is 2+2?")  # doctest: +SKIP
        >>> import mlflow  # doctest: +SKIP
        >>> mlflow.search_traces(return_type="list")  # doctest: +SKIP
    """
    global _settings, _tracer
    if compile_trace_sample < 0:
        raise UserError(
            f"compile_trace_sample must be >= 0 (0 traces none), got {compile_trace_sample}."
        )
    with _lock:
        others = tuple(cb for cb in _defaults_callbacks() if cb is not _tracer)
        if disable or not log_traces:
            if _tracer is not None:
                configure(callbacks=others)
            _settings = _tracer = None
            return
        from dspex.integrations.mlflow._tracking import configure_tracking

        configure_tracking(tracking_uri)
        _tracer = MlflowTracer(log_inputs_outputs=log_inputs_outputs)
        _settings = AutologSettings(
            log_inputs_outputs, log_traces_from_compile, compile_trace_sample
        )
        configure(callbacks=(*others, _tracer))


def autolog_settings() -> AutologSettings | None:
    """What :func:`autolog` turned on, or ``None`` while it is off."""
    return _settings


def _defaults_callbacks() -> tuple[Any, ...]:
    from dspex import _settings as settings_module

    return tuple(settings_module._defaults.callbacks)


ENV = "DSPEX_MLFLOW_TRACES"


def _from_env() -> AutologSettings | None:
    """``$DSPEX_MLFLOW_TRACES`` for a process that never calls :func:`autolog` (``dspex
    optimize``, a deployment's worker): ``1``/``true`` samples 20 calls per run, a number
    that many, ``all`` every call; unset, empty, ``0`` or ``false``: none."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return None
    if value == "all":
        return AutologSettings(True, True, 0)
    if value in ("1", "true", "yes"):
        return AutologSettings(True, False, 20)
    if value.isdigit():
        return AutologSettings(True, False, int(value))
    raise UserError(
        f"${ENV}={value!r} is not understood: use 1 (20 traces per optimization run), a "
        "number of traces, 'all', or 0 for none."
    )


@contextmanager
def run_traces(run_id: str, tracking_uri: str | None = None) -> Iterator[None]:
    """Inside the block, MLflow traces (if :func:`autolog` or ``$DSPEX_MLFLOW_TRACES`` asks
    for them) go to run ``run_id``: its experiment, linked to it, sampled as asked. Does
    nothing otherwise.

    What an optimization flow wraps its run in; calls made in the block's thread or task
    and the tasks it starts are traced this way.
    """
    options = _settings or _from_env()
    if options is None:
        yield
        return
    import mlflow

    experiment_id = mlflow.MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    tracer = MlflowTracer(
        log_inputs_outputs=options.log_inputs_outputs,
        run_id=run_id,
        experiment_id=str(experiment_id),
        max_traces=None if options.log_traces_from_compile else options.compile_trace_sample,
    )
    # The run's tracer replaces the process-wide one here, so no call is traced twice.
    callbacks = tuple(cb for cb in current().callbacks if not isinstance(cb, MlflowTracer))
    with context(callbacks=(*callbacks, tracer)):
        yield
