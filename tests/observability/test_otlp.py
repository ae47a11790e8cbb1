"""OTLP by configuration: spans reach a (loopback) collector named only by the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variable, over OTLP/HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import dspex
import dspex.observability
from dspex.testing import DummyLM


class _Collector(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def collector() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback OTLP/HTTP endpoint: its port, and the request bodies it received."""
    received: list[bytes] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], received
    server.shutdown()
    server.server_close()
    thread.join()


def test_spans_reach_the_collector_the_environment_names(
    collector: tuple[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}/v1/traces")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    dspex.observability.instrument(provider)
    try:
        lm = DummyLM([{"reasoning": "adding", "answer": "4"}])
        dspex.ChainOfThought("question -> answer")(question="2+2?", lm=lm)
    finally:
        dspex.observability.uninstrument()
        provider.shutdown()  # flushes the batch
    names = set()
    for body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                assert scope.scope.name == "dspex"
                names |= {span.name for span in scope.spans}
    assert names == {"ChainOfThought", "predict", "ChatAdapter", "chat script"}
