"""Upload, list, inspect and delete documents; follow ingestion jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from api.deps import DocqaDep, JobsDep, PrincipalDep, SettingsDep, TenantDep
from api.errors import responses
from api.multipart import read_upload
from api.schemas import (
    DeletedDocument,
    DocumentList,
    DocumentOut,
    JobOut,
    UploadAccepted,
    UploadedDocument,
)
from docqa.errors import NotFoundError
from ingestion.jobs import UploadItem, new_job_id
from ingestion.uploads import IncomingFile, accept_uploads, queue_upload

router = APIRouter(tags=["documents"])


# The body is read by api/multipart.py as it streams (caps applied on the way in), so
# the schema of the multipart body is declared here rather than inferred from parameters.
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "The documents (repeat the part); each at most "
                        "DOCQA_API__MAX_UPLOAD_MB, at most DOCQA_API__MAX_FILES_PER_UPLOAD.",
                    }
                },
            }
        }
    },
}


@router.post(
    "/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    responses=responses(400, 413, 415, 422),
    summary="Upload one or more files; they are indexed in the background",
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_documents(
    request: Request, docqa: TenantDep, settings: SettingsDep, jobs: JobsDep
) -> UploadAccepted:
    form = await read_upload(
        request,
        max_files=settings.api.max_files_per_upload,
        max_mb=settings.api.max_upload_mb,
    )
    job_id = new_job_id()

    def record(items: list[UploadItem]) -> None:
        queue_upload(docqa.records, docqa.jobs, jobs, job_id, items)

    try:
        incoming = [IncomingFile(f.filename, f.stream) for f in form.files]  # type: ignore[arg-type]
        # Stage every file, then place them and record the job, all or none; the
        # record-store writes are blocking calls, so all of it runs off the event loop.
        items = await run_in_threadpool(
            accept_uploads,
            settings,
            incoming,
            collection=docqa.collection_name,
            then=record,
        )
    finally:
        form.close()
    return UploadAccepted(
        job_id=job_id,
        collection=docqa.collection_name,
        documents=[UploadedDocument(document_id=i.document_id, source=i.source) for i in items],
    )


@router.get("/documents", response_model=DocumentList, responses=responses(422))
def list_documents(
    docqa: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    # Bounded: a database offset past 2**63 is a 500 on some engines, and nobody pages there.
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    status: Literal["queued", "indexing", "indexed", "failed"] | None = None,
) -> DocumentList:
    docs = docqa.records.list(limit=limit, offset=offset, status=status)
    return DocumentList(
        documents=[DocumentOut.of(d) for d in docs],
        total=docqa.records.count(status=status),
        limit=limit,
        offset=offset,
    )


@router.get("/documents/{document_id}", response_model=DocumentOut, responses=responses(404))
def get_document(document_id: str, docqa: TenantDep) -> DocumentOut:
    record = docqa.records.get(document_id)
    if record is None:
        raise NotFoundError(f"no document with id {document_id!r}", param="document_id")
    return DocumentOut.of(record)


@router.delete(
    "/documents/{document_id}", response_model=DeletedDocument, responses=responses(404, 409)
)
def delete_document(document_id: str, docqa: TenantDep) -> DeletedDocument:
    removed = docqa.indexer().delete_document(document_id)
    return DeletedDocument(document_id=document_id, chunks_removed=removed)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses(404))
def get_job(job_id: str, docqa: DocqaDep, jobs: JobsDep, caller: PrincipalDep) -> JobOut:
    job = docqa.jobs.get(job_id)
    # Another tenant's job is not this caller's to know about: the same 404 as none at all.
    if job is None or not caller.may_use(job.collection):
        raise NotFoundError(f"no job with id {job_id!r}", param="job_id")
    return JobOut.of(jobs.refresh(job))
