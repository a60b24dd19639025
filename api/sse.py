"""Server-Sent Events framing, shared by /v1/ask and /v1/chat/completions."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from api.errors import error_body, public_message
from docqa.errors import DocqaError
from inference.protocols import AnswerEvent

log = logging.getLogger("docqa.api")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event_schema(names: list[str] | None, data: str) -> dict[str, Any]:
    """The OpenAPI schema of one Server-Sent Event of a stream: its `event` name (when the
    stream names them) and its `data` line, described by `data`."""
    properties: dict[str, Any] = {
        "data": {"type": "string", "contentMediaType": "application/json", "description": data}
    }
    if names:
        properties["event"] = {"type": "string", "enum": names}
    return {"type": "object", "required": ["data"], "properties": properties}


def sse(data: Any, event: str | None = None) -> str:
    """One event: an optional `event:` line, one `data:` line of compact JSON (JSON escapes
    newlines, so the data never spans lines), and the blank line that ends it."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


async def event_stream(
    events: AsyncIterator[AnswerEvent],
    render: Callable[[AnswerEvent], list[str]],
    render_error: Callable[[dict[str, Any]], list[str]],
) -> StreamingResponse:
    """The answer events as a `text/event-stream` response, each rendered by `render`.

    The first event is awaited before any byte of the response is sent: a failure up to
    there (bad filters, an index mismatch, a question too long for the model) is an
    ordinary JSON error with its status code, not a broken stream."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise DocqaError("the answer produced no events") from None
    return StreamingResponse(
        frame_events(first, events, render, render_error),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def frame_events(
    first: AnswerEvent,
    events: AsyncIterator[AnswerEvent],
    render: Callable[[AnswerEvent], list[str]],
    render_error: Callable[[dict[str, Any]], list[str]],
) -> AsyncIterator[str]:
    """`render` each event; a failure after the stream began becomes an error event (the
    status line has already gone out). Cancelling this (the client left) cancels `events`
    and so the generation behind it."""
    try:
        event: AnswerEvent | None = first
        while event is not None:
            for text in render(event):
                yield text
            event = await anext(events, None)
    except DocqaError as exc:
        if exc.status_code >= 500:
            log.error("answer stream failed: %s: %s", exc.error_type, exc.message)
        body = error_body(exc.status_code, public_message(exc), exc.error_type)
        yield "".join(render_error(body))
    except Exception:  # reported in the stream: never a bare 500
        log.exception("answer stream failed")
        message = "internal error; the server log has the details under this request id"
        yield "".join(render_error(error_body(500, message)))
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
