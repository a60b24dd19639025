"""Ask a question, or just see the ranked passages."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import DocqaDep
from api.errors import responses
from api.schemas import AskRequest, AskResponse, SearchRequest, SearchResponse, SearchResult
from docqa.services import Docqa

router = APIRouter(tags=["questions"])


@router.post("/search", response_model=SearchResponse, responses=responses(401, 409, 422))
def search(body: SearchRequest, docqa: DocqaDep) -> SearchResponse:
    filters = body.filters.to_search() if body.filters else None
    retrieval = docqa.search(body.query, top_k=body.top_k, filters=filters)
    return SearchResponse(
        results=[SearchResult.of(h) for h in retrieval.hits], timings_ms=retrieval.timings_ms
    )


@router.post(
    "/ask",
    response_model=AskResponse,
    responses={
        **responses(401, 409, 422, 503),
        200: {
            "description": "The answer; with `stream: true`, Server-Sent Events instead.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
)
def ask(body: AskRequest, docqa: DocqaDep) -> AskResponse | StreamingResponse:
    filters = body.filters.to_search() if body.filters else None
    if body.stream:
        return StreamingResponse(
            _sse(docqa, body, filters),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return AskResponse.of(docqa.ask(body.question, top_k=body.top_k, filters=filters))


def _sse(docqa: Docqa, body: AskRequest, filters: object) -> Iterator[str]:
    answer = docqa.ask(body.question, top_k=body.top_k, filters=filters)  # type: ignore[arg-type]
    yield f"event: delta\ndata: {json.dumps({'text': answer.text})}\n\n"
    yield f"event: final\ndata: {AskResponse.of(answer).model_dump_json()}\n\n"
