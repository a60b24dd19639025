"""Ratings of answers: thumbs up or down with an optional comment, from the page or any
API client, kept with the question, the answer, its citations and the index version."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from api.deps import PrincipalDep, tenant
from api.errors import responses
from api.schemas import MAX_QUERY_CHARS, CollectionName
from app import Docqa
from evals.feedback import rate_answer

router = APIRouter(tags=["feedback"])
log = logging.getLogger("docqa.api")

MAX_ANSWER_CHARS = 50_000
MAX_COMMENT_CHARS = 4_000
MAX_CITATIONS = 50
MAX_QUOTE_CHARS = 20_000


class RatedCitation(BaseModel):
    """A citation of the rated answer, as /v1/ask returned it (its other fields may be
    sent too and are ignored)."""

    model_config = ConfigDict(extra="ignore")

    source: str = Field(min_length=1, max_length=4096)
    text: str = Field(max_length=MAX_QUOTE_CHARS, description="The quoted passage.")
    document_id: str | None = Field(None, max_length=1024)
    chunk_id: str | None = Field(None, max_length=1024)
    page: int | None = Field(None, ge=0, le=10_000_000)
    section: str = Field("", max_length=4096)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"] = Field(description="Was the answer right and useful?")
    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    answer: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS, description="The answer rated.")
    citations: Annotated[list[RatedCitation], Field(max_length=MAX_CITATIONS)] = Field(
        default_factory=list,
        description="The answer's citations; an up-voted answer's quotes become gold answers "
        "in `docqa eval export-feedback`.",
    )
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)
    found: StrictBool = Field(True, description="The answer's `found`.")
    degraded: StrictBool = Field(False, description="The answer's `degraded`.")
    collection: CollectionName | None = None

    @field_validator("question", "answer")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must contain more than whitespace")
        return v


class FeedbackOut(BaseModel):
    feedback_id: str
    created_at: datetime
    rating: Literal["up", "down"]
    index_version: str | None = Field(
        description="The index that served when the rating came (null when it could not be read)."
    )


@router.post(
    "/feedback",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackOut,
    responses=responses(413, 422),
    summary="Rate an answer (thumbs up or down, optional comment)",
)
def give_feedback(body: FeedbackRequest, request: Request, caller: PrincipalDep) -> FeedbackOut:
    docqa = tenant(request, body.collection)
    record = rate_answer(
        docqa.eval_store,
        rating=body.rating,
        question=body.question,
        answer=body.answer,
        citations=[c.model_dump() for c in body.citations],
        comment=body.comment,
        found=body.found,
        degraded=body.degraded,
        index_version=_serving_version(docqa),
        key_id=caller.key_id,
        collection=docqa.collection_name,
    )
    return FeedbackOut(
        feedback_id=record.feedback_id,
        created_at=record.created_at,
        rating=body.rating,
        index_version=record.index_version,
    )


def _serving_version(docqa: Docqa) -> str | None:
    # A rating is worth keeping even while the index cannot be read: it is stored without
    # the version rather than refused.
    try:
        return docqa.retriever.index_version()
    except Exception:
        log.warning("feedback stored without the index version", exc_info=True)
        return None
