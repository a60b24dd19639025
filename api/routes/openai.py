"""An OpenAI-compatible front door, so OpenAI clients (the openai SDK, Open WebUI) can use
docqa as if it were a model.

`POST /v1/chat/completions`: the last user message is the question; retrieval happens
here, and the answer comes as a `chat.completion`, or streamed as `chat.completion.chunk`
events ending with `data: [DONE]`. A follow-up ("and in 2021?") is searched together with
the user question before it (api/chat_turns.py). Sampling parameters (temperature,
max_tokens...) are accepted and ignored: docqa's settings decide them. `finish_reason` is
`length` when the model reached the answer token limit.

The answer's text ends with a numbered "Sources" list (DOCQA_API__OPENAI_SOURCES_FOOTER),
because chat front ends show only the text. Open WebUI's background task prompts (title,
tags, follow-ups, queries) are answered without retrieval and not recorded as traffic.

Two extra fields carry what OpenAI's format has no place for, on the response and on the
final chunk (the one with `finish_reason`):

- `citations`: the cited passages; marker `[n]` in the answer is `citations[n-1]`;
- `docqa`: `found`, `degraded`, `cached`, `warnings`, `timings_ms`.

docqa's own `top_k` and `filters` may be sent as extra body fields (`extra_body` in the
openai SDK). Errors use docqa's error shape, `{"error": {"message", "type", "code",
"param"}}`, which OpenAI clients read as they read OpenAI's (`code` is the HTTP status).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from api.chat_turns import background_task, search_query, text_of
from api.deps import PrincipalDep, SettingsDep, get_docqa, tenant
from api.errors import responses
from api.schemas import MAX_QUERY_CHARS, CitationOut, Filters
from api.sse import event_schema, event_stream, sse
from docqa.domain import DEFAULT_COLLECTION, Answer
from docqa.errors import DocqaError
from inference.answering import answered, not_found
from inference.protocols import AnswerEvent

router = APIRouter(tags=["openai-compatible"])

MODEL_ID = "docqa"
_STARTED = int(time.time())


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's request body; fields docqa does not use are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(
        None,
        description="`docqa:<collection>` asks that collection (tenant); any other name asks "
        "the caller's default collection (see GET /v1/models).",
    )
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    top_k: int | None = Field(None, ge=1, le=50, description="docqa: passages to use.")
    filters: Filters | None = Field(None, description="docqa: restrict the documents searched.")


class DocqaInfo(BaseModel):
    found: bool
    degraded: bool
    cached: bool
    warnings: list[str]
    timings_ms: dict[str, float]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = Field(
        "stop", description="`length` when the model reached the answer token limit."
    )


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    citations: list[CitationOut] = Field(
        description="docqa: the cited passages; `[n]` in the answer is citations[n-1]."
    )
    docqa: DocqaInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "docqa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models", response_model=ModelList)
def list_models(request: Request, caller: PrincipalDep) -> ModelList:
    """`docqa` (the caller's default collection) and `docqa:<name>` for every other
    collection the caller may ask."""
    if caller.collections is not None:
        names = list(caller.collections)
    else:
        names = [n for n in get_docqa(request).records.collections() if n != DEFAULT_COLLECTION]
    return ModelList(
        data=[ModelCard(id=MODEL_ID, created=_STARTED)]
        + [ModelCard(id=model_for(n), created=_STARTED) for n in names]
    )


def model_for(collection: str) -> str:
    return f"{MODEL_ID}:{collection}"


def collection_of(model: str | None) -> str | None:
    """The collection a `model` names (`docqa:<name>`); None: the caller's default."""
    prefix = f"{MODEL_ID}:"
    return model[len(prefix) :] if model and model.startswith(prefix) else None


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        **responses(400, 409, 413, 422, 503),
        200: {
            "description": "The answer; with `stream: true`, `chat.completion.chunk` events.",
            "content": {
                "text/event-stream": {
                    "schema": event_schema(
                        None,
                        "a chat.completion.chunk, the error shape, or [DONE] at the end",
                    )
                }
            },
        },
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, settings: SettingsDep, caller: PrincipalDep
) -> ChatCompletion | StreamingResponse:
    named = collection_of(body.model)
    answering = tenant(request, named).answering
    model = model_for(named) if named else MODEL_ID  # the name the client used, echoed
    question = last_user_question(body.messages)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    footer = settings.api.openai_sources_footer
    task_reply = background_task(question)
    if task_reply is not None:
        # A front end's own housekeeping (title, tags, follow-ups): no retrieval, no
        # generation, not recorded as traffic.
        answer: Answer | None = Answer(text=task_reply, found=True, citations=[])
        footer = False
    elif body.filters and body.filters.matches_nothing:
        answer = not_found()
    else:
        answer = None
    filters = body.filters.to_search() if body.filters else None
    search_for = search_query([(m.role, text_of(m.content)) for m in body.messages])
    if body.stream:
        events = (
            answered(answer)
            if answer is not None
            else answering.ask_stream(
                question, top_k=body.top_k, filters=filters, search_for=search_for
            )
        )
        chunks = _Chunks(
            completion_id,
            model,
            created,
            bool(body.stream_options and body.stream_options.include_usage),
            footer=footer,
        )
        return await event_stream(events, chunks.render, lambda err: [sse(err), sse("[DONE]")])
    if answer is None:
        answer = await run_in_threadpool(
            answering.ask, question, top_k=body.top_k, filters=filters, search_for=search_for
        )
    content = answer.text + (sources_footer(answer) if footer else "")
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[Choice(message=AssistantMessage(content=content), finish_reason=_finish(answer))],
        usage=_usage(answer),
        citations=_citations(answer),
        docqa=_info(answer),
    )


def sources_footer(answer: Answer) -> str:
    """The answer's citations as a numbered list to append to its text: `[n]` in the text
    is the n-th line."""
    if not answer.citations:
        return ""
    lines = ["", "", "Sources:"]
    for n, c in enumerate(answer.citations, start=1):
        where = [c.source]
        if c.page is not None:
            where.append(f"p. {c.page}")
        if c.section:
            where.append(f"§ {c.section}")
        quote = " ".join(c.text.split())
        quote = quote if len(quote) <= 200 else quote[:199].rstrip() + "…"
        lines.append(f"[{n}] {', '.join(where)}: \u201c{quote}\u201d")
    return "\n".join(lines)


def _finish(answer: Answer) -> Literal["stop", "length"]:
    return "length" if answer.finish_reason == "length" else "stop"


def last_user_question(messages: list[ChatMessage]) -> str:
    """The text of the last user message.

    :raises DocqaError: there is none, or it has no text, or it is too long.
    """
    user = next((m for m in reversed(messages) if m.role == "user"), None)
    if user is None:
        raise DocqaError(
            "messages holds no user message: send the question as "
            '{"role": "user", "content": "..."}',
            param="messages",
        )
    text = text_of(user.content)
    if not text.strip():
        raise DocqaError("the last user message has no text to answer", param="messages")
    if len(text) > MAX_QUERY_CHARS:
        raise DocqaError(
            f"the question is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}",
            param="messages",
        )
    return text


class _Chunks:
    """docqa's answer events as OpenAI `chat.completion.chunk` events."""

    def __init__(
        self, completion_id: str, model: str, created: int, include_usage: bool, *, footer: bool
    ) -> None:
        self.id = completion_id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.footer = footer
        self.started = False

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": choices,
                **extra,
            }
        )

    def render(self, event: AnswerEvent) -> list[str]:
        out = []
        if not self.started:
            self.started = True
            out.append(self._delta({"role": "assistant", "content": ""}))
        if event.kind == "delta":
            if event.text:
                out.append(self._delta({"content": event.text}))
            return out
        answer = event.answer
        assert answer is not None
        if self.footer and answer.citations:
            out.append(self._delta({"content": sources_footer(answer)}))
        out.append(
            self.chunk(
                [{"index": 0, "delta": {}, "finish_reason": _finish(answer)}],
                citations=[c.model_dump(mode="json") for c in _citations(answer)],
                docqa=_info(answer).model_dump(mode="json"),
            )
        )
        if self.include_usage:
            usage = _usage(answer) or Usage()
            out.append(self.chunk([], usage=usage.model_dump()))
        out.append(sse("[DONE]"))
        return out

    def _delta(self, delta: dict[str, Any]) -> str:
        return self.chunk([{"index": 0, "delta": delta, "finish_reason": None}])


def _citations(answer: Answer) -> list[CitationOut]:
    return [CitationOut(**vars(c)) for c in answer.citations]


def _info(answer: Answer) -> DocqaInfo:
    return DocqaInfo(
        found=answer.found,
        degraded=answer.degraded,
        cached=answer.cached,
        warnings=answer.warnings,
        timings_ms=answer.timings_ms,
    )


def _usage(answer: Answer) -> Usage | None:
    if not answer.usage:
        return None
    return Usage(**{k: v for k, v in answer.usage.items() if k in Usage.model_fields})
