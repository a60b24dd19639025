"""OpenTelemetry spans per stage, when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Unset, `span()` costs nothing and nothing is imported. Set, spans go to the OTLP/HTTP
endpoint through the SDK's batch processor (the standard OTEL_* variables configure the
exporter: headers, protocol, service name). Stages wrap their work in `span("docqa.<stage>")`
so a trace shows where a request's time went: retrieve, generate, ingest (parse, embed,
write).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

_tracer: Any = None
_lock = threading.Lock()


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def tracer() -> Any:
    """The docqa tracer, set up on first use; None when tracing is off."""
    global _tracer
    if not enabled():
        return None
    with _lock:
        if _tracer is None:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            service = os.environ.get("OTEL_SERVICE_NAME", "docqa")
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(provider)
            _tracer = trace.get_tracer("docqa")
        return _tracer


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a stage's work (a no-op when tracing is off)."""
    t = tracer()
    if t is None:
        with nullcontext() as nothing:
            yield nothing
        return
    with t.start_as_current_span(name, attributes=attributes or None) as current:
        yield current


def flush(timeout_s: float = 5.0) -> bool:
    """Send every finished span now (tests, shutdown)."""
    if _tracer is None:
        return True
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force = getattr(provider, "force_flush", None)
    return bool(force(int(timeout_s * 1000))) if force else True
