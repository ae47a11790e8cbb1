"""Observability: dspex's calls as OpenTelemetry spans.

* :func:`instrument` / :func:`uninstrument`: spans for every module, adapter, LM, tool and
  evaluation call in this process, to the tracer provider you configured (OTLP, console,
  any exporter).
* :class:`OpenTelemetryCallback`: the same as a callback, for one block
  (``with dspex.context(callbacks=[...])``) or ``dspex.configure(callbacks=[...])``.

Off by default, and free when off: nothing here is imported by ``import dspex`` and no
callback runs until you ask. MLflow's trace view is :func:`dspex.mlflow.autolog`. See
``docs/observability.md``.

Example:
    >>> import dspex.observability
    >>> dspex.observability.is_instrumented()
    False
"""

from dspex.observability._otel import (
    OpenTelemetryCallback,
    instrument,
    is_instrumented,
    uninstrument,
)

__all__ = ["OpenTelemetryCallback", "instrument", "is_instrumented", "uninstrument"]
