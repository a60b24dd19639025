"""One passage of the serving index by its chunk id: what a citation points at, whole, so
a reader can see the quoted text in its place."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import TenantDep
from api.errors import responses
from docqa.errors import NotFoundError

router = APIRouter(tags=["questions"])


class PassageOut(BaseModel):
    chunk_id: str
    document_id: str
    source: str
    page: int | None
    section: str
    text: str = Field(description="The whole passage (a citation quotes part of it).")


@router.get(
    "/passages/{chunk_id}",
    response_model=PassageOut,
    responses=responses(404, 409, 503),
    summary="The passage a citation points at",
)
def get_passage(chunk_id: str, docqa: TenantDep) -> PassageOut:
    index = docqa.indexes.existing()
    found = index.vectors.get([chunk_id]) if index is not None else []
    if not found:
        raise NotFoundError(
            f"no passage {chunk_id!r} in the serving index (its document was changed, "
            "deleted or re-indexed since the answer: ask again)",
            param="chunk_id",
        )
    c = found[0]
    return PassageOut(
        chunk_id=c.chunk_id,
        document_id=c.document_id,
        source=c.source,
        page=c.page,
        section=c.section,
        text=c.text,
    )
