"""What the API tells operators: a request id on every response, log line and error body;
Prometheus metrics for every request (prometheus-fastapi-instrumentator) beside docqa's
own (docqa/metrics.py); a span per request when OpenTelemetry is configured."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import unexpected_error_body
from docqa import metrics, tracing
from docqa.logs import request_id

log = logging.getLogger("docqa.api")

REQUEST_ID_HEADER = "x-request-id"
# A client's id is kept when it is short and plain (it ends up in logs and headers).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Buckets reach 120 s: a streamed answer is timed to its last event.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class RequestIdMiddleware:
    """Takes X-Request-ID from the client (or makes one), puts it in the logging context
    for the whole request (streamed bodies included) and returns it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"")
        text = sent.decode("latin-1")
        rid = text if _CLIENT_ID.fullmatch(text) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message["headers"] = headers
            await send(message)

        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            with tracing.span(
                f"HTTP {scope.get('method', '')} {scope.get('path', '')}", request_id=rid
            ):
                await self.app(scope, receive, send_tracked)
        except Exception:
            # Unforeseen: logged with the request id, answered in the one error shape (the
            # metrics middleware inside has counted the 500 already).
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            body = unexpected_error_body()
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            request_id.reset(token)


def install_observability(
    app: FastAPI, *, json_bytes: int, upload_bytes: int, queue_depth: Any = None
) -> None:
    """Body caps, HTTP metrics and request ids for `app`, from the inside out.
    `queue_depth`: a callable giving the number of unfinished ingestion jobs, read when
    /metrics is scraped."""
    # Innermost: a refused body is a 413 the metrics count, with a request id.
    app.add_middleware(BodyLimitMiddleware, json_bytes=json_bytes, upload_bytes=upload_bytes)
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    # The HTTP metrics live in a registry of this app's own (the instrumentator would
    # silently skip a second app in one process, as tests make); /metrics serves it beside
    # the process-wide one that holds docqa's own metrics.
    app.state.http_metrics = CollectorRegistry()
    Instrumentator(
        should_group_status_codes=False,
        excluded_handlers=["/metrics"],
        registry=app.state.http_metrics,
    ).instrument(
        app,
        metric_namespace="docqa",
        latency_highr_buckets=HTTP_BUCKETS,
        latency_lowr_buckets=(0.1, 0.5, 1, 5, 30, 120),
    )
    # Outermost: the id is set before anything else runs, and on every response, errors too.
    app.add_middleware(RequestIdMiddleware)
    if queue_depth is not None:
        metrics.QUEUE_DEPTH.set_function(queue_depth)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Caps on request bodies, applied before they are read: a Content-Length over the cap
    gets 413 at once, and a body without one (chunked) is counted as it arrives and cut at
    the cap. Uploads are capped at their files' limits (each file again while it streams,
    in api/multipart.py); every other body (JSON) at DOCQA_API__MAX_JSON_KB."""

    def __init__(self, app: ASGIApp, *, json_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.json_bytes = json_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        upload = scope.get("method") == "POST" and scope.get("path") == "/v1/documents"
        cap = self.upload_bytes if upload else self.json_bytes
        what = "upload" if upload else "request body"
        setting = (
            "DOCQA_API__MAX_UPLOAD_MB x DOCQA_API__MAX_FILES_PER_UPLOAD"
            if upload
            else "DOCQA_API__MAX_JSON_KB"
        )
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await _refuse(send, f"the {what} is {int(declared)} bytes, over {cap} ({setting})")
            return
        received = 0
        cut = replaced = started = False

        async def counted() -> Message:
            nonlocal received, cut
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    cut = True
                    raise _BodyTooLarge
            return message

        async def answered(message: Message) -> None:
            # Whatever the app made of the cut body (FastAPI turns a failed read into a
            # 400), the client is told the truth: 413.
            nonlocal replaced, started
            if replaced:
                return
            if message["type"] == "http.response.start":
                if cut:
                    replaced = True
                    await _refuse(send, f"the {what} is over {cap} bytes ({setting}); cut there")
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, counted, answered)
        except _BodyTooLarge:
            if started:
                raise
            if not replaced:
                await _refuse(send, f"the {what} is over {cap} bytes ({setting}); cut there")


async def _refuse(send: Send, message: str) -> None:
    import json

    from api.errors import error_body

    body = json.dumps(error_body(413, message, "payload_too_large")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
