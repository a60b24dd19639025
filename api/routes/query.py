"""Ask a question, or just see the ranked passages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import tenant
from api.errors import responses
from api.schemas import AskRequest, AskResponse, SearchRequest, SearchResponse, SearchResult
from api.sse import event_schema, event_stream, sse
from inference.answering import answered, not_found
from inference.protocols import AnswerEvent

router = APIRouter(tags=["questions"])


@router.post(
    "/search", response_model=SearchResponse, responses=responses(400, 403, 409, 413, 422, 503)
)
def search(body: SearchRequest, request: Request) -> SearchResponse:
    retriever = tenant(request, body.collection).retriever
    if body.filters and body.filters.matches_nothing:
        return SearchResponse(results=[])
    filters = body.filters.to_search() if body.filters else None
    retrieval = retriever.retrieve(body.query, body.top_k, filters)
    return SearchResponse(
        results=[SearchResult.of(h) for h in retrieval.hits], timings_ms=retrieval.timings_ms
    )


ASK_STREAM_DESCRIPTION = """With `"stream": true` the answer comes as Server-Sent Events:

- `event: delta` with `{"text": "..."}`: the next piece of the answer (put together, the
  pieces are the final answer's text); the extractive answerer sends one piece;
- `event: final` with the same body as the non-streamed answer (citations, `found`,
  `degraded`, `usage`, `timings_ms`, `warnings`) plus `generation` (model, prompt version,
  prompt tokens, passages used), then the stream ends;
- `event: error` with `{"error": {...}}` if the answer fails after the stream began.

Errors before the first event are ordinary JSON errors. Closing the connection cancels
the generation on the model server."""


@router.post(
    "/ask",
    response_model=AskResponse,
    description=ASK_STREAM_DESCRIPTION,
    responses={
        **responses(400, 403, 409, 413, 422, 503),
        200: {
            "description": "The answer; with `stream: true`, Server-Sent Events instead.",
            "content": {
                "text/event-stream": {
                    "schema": event_schema(
                        ["delta", "final", "error"],
                        'delta: {"text": "..."}; final: the non-streamed answer plus '
                        '`generation`; error: {"error": {...}} in the error shape',
                    )
                }
            },
        },
    },
)
async def ask(body: AskRequest, request: Request) -> AskResponse | StreamingResponse:
    answering = tenant(request, body.collection).answering
    filters = body.filters.to_search() if body.filters else None
    if body.filters and body.filters.matches_nothing:
        if body.stream:
            return await event_stream(answered(not_found()), _ask_event, lambda e: [])
        return AskResponse.of(not_found())
    if body.stream:
        events = answering.ask_stream(body.question, top_k=body.top_k, filters=filters)
        return await event_stream(events, _ask_event, lambda err: [sse(err, "error")])
    answer = await run_in_threadpool(
        answering.ask, body.question, top_k=body.top_k, filters=filters
    )
    return AskResponse.of(answer)


def _ask_event(event: AnswerEvent) -> list[str]:
    if event.kind == "delta":
        return [sse({"text": event.text}, "delta")] if event.text else []
    assert event.answer is not None
    final: dict[str, Any] = AskResponse.of(event.answer).model_dump(mode="json")
    final["generation"] = event.extra or None
    return [sse(final, "final")]
