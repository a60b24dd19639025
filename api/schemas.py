"""Request and response bodies of the HTTP API (and of the CLI's --json output)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

from docqa.domain import COLLECTION_NAME_PATTERN, Answer, IngestResult, JobStatus, ScoredChunk
from ingestion.jobs import JobRecord
from ingestion.records import DocumentRecord
from retrieval.protocols import SearchFilters

MAX_QUERY_CHARS = 4000

CollectionName = Annotated[
    str,
    StringConstraints(pattern=COLLECTION_NAME_PATTERN, max_length=63),
    Field(
        description="The collection (tenant) to use. Default: the key's only collection when "
        "it is limited to one, else `default`. A key limited to other collections gets 403.",
    ),
]


class ErrorDetail(BaseModel):
    message: str = Field(description="What is wrong and what to do about it.")
    type: str = Field(description="Stable machine-readable kind, e.g. not_found, invalid_request.")
    code: int = Field(description="The HTTP status code.")
    param: str | None = Field(None, description="The request field at fault, when there is one.")
    request_id: str | None = Field(
        None,
        description="The request's id (also in the X-Request-ID header and on every server "
        "log line about it): quote it when reporting a problem.",
    )


class ErrorResponse(BaseModel):
    """The one error shape of the API (as in OpenAI's and vLLM's APIs)."""

    error: ErrorDetail


# Filter lists are bounded: 40,000 ids once made a 500 (too many SQL variables), and a
# proxy that builds per-user allow-lists never needs more.
MAX_FILTER_VALUES = 1000
FilterValue = Annotated[str, StringConstraints(max_length=1024)]
FilterValues = Annotated[list[FilterValue], Field(max_length=MAX_FILTER_VALUES)]


class Filters(BaseModel):
    """Restrict a search to some documents, sources or file types (a value or a list; any
    of them matches). An empty list matches nothing: a proxy that builds per-user
    allow-lists gets no results for a user with an empty one, never everything."""

    model_config = ConfigDict(extra="forbid")

    document_id: FilterValues | FilterValue | None = Field(
        None, description="Only these documents."
    )
    source: FilterValues | FilterValue | None = Field(
        None, description="Only these sources (file paths or upload names)."
    )
    type: FilterValues | FilterValue | None = Field(
        None, description="Only these file types (pdf, docx...)."
    )

    @property
    def matches_nothing(self) -> bool:
        return any(v == [] for v in (self.document_id, self.source, self.type))

    def to_search(self) -> SearchFilters:
        def as_list(value: list[str] | str | None) -> list[str]:
            if value is None:
                return []
            return [value] if isinstance(value, str) else list(value)

        return SearchFilters(
            document_ids=as_list(self.document_id),
            sources=as_list(self.source),
            file_types=[t.lower().lstrip(".") for t in as_list(self.type)],
        )


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(None, ge=1, le=50, description="Passages to use (default 5).")
    filters: Filters | None = None
    collection: CollectionName | None = None


class SearchRequest(_Query):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must contain more than whitespace")
        return v


class AskRequest(_Query):
    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    stream: StrictBool = Field(
        False,
        description="Answer as Server-Sent Events (needs the vllm "
        "generator for token streaming; the extractive answer comes whole).",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must contain more than whitespace")
        return v


class SearchResult(BaseModel):
    chunk_id: str
    document_id: str
    source: str
    page: int | None
    section: str
    text: str
    score: float = Field(description="Fused rank score (reciprocal rank fusion).")
    relevance: float | None = Field(None, description="Cosine similarity to the query.")

    @classmethod
    def of(cls, hit: ScoredChunk) -> SearchResult:
        c = hit.chunk
        return cls(
            chunk_id=c.chunk_id,
            document_id=c.document_id,
            source=c.source,
            page=c.page,
            section=c.section,
            text=c.text,
            score=round(hit.score, 6),
            relevance=None if hit.relevance is None else round(hit.relevance, 4),
        )


class SearchResponse(BaseModel):
    results: list[SearchResult]
    timings_ms: dict[str, float] = {}


class CitationOut(BaseModel):
    document_id: str
    source: str
    page: int | None
    section: str
    chunk_id: str
    text: str = Field(description="The quoted passage the answer relies on.")
    score: float


class AskResponse(BaseModel):
    answer: str
    found: bool = Field(description="False when nothing relevant was found in the documents.")
    citations: list[CitationOut]
    timings_ms: dict[str, float]
    degraded: bool = Field(
        False,
        description="True when the LLM did not write the whole answer: no model server "
        "answered in time and the extractive answerer stood in, or a streamed answer was cut "
        "short (the warnings say which).",
    )
    cached: bool = False
    usage: dict[str, int] | None = None
    warnings: list[str] = []

    @classmethod
    def of(cls, answer: Answer) -> AskResponse:
        return cls(
            answer=answer.text,
            found=answer.found,
            citations=[CitationOut(**vars(c)) for c in answer.citations],
            timings_ms=answer.timings_ms,
            degraded=answer.degraded,
            cached=answer.cached,
            usage=answer.usage,
            warnings=answer.warnings,
        )


class DocumentOut(BaseModel):
    document_id: str
    collection: str
    source: str
    file_type: str
    status: Literal["queued", "indexing", "indexed", "failed", "deleting"]
    chunk_count: int
    content_hash: str | None
    error: str | None = Field(None, description="Why the latest version failed to index.")
    reason: str | None = Field(None, description="Machine-readable failure cause.")
    warnings: list[str]
    size_bytes: int | None
    created_at: datetime | None
    updated_at: datetime | None
    indexed_at: datetime | None

    @classmethod
    def of(cls, r: DocumentRecord) -> DocumentOut:
        return cls(
            document_id=r.document_id,
            collection=r.collection,
            source=r.source,
            file_type=r.file_type,
            status=r.status.value,  # type: ignore[arg-type]
            chunk_count=r.chunk_count,
            content_hash=r.content_hash,
            error=r.error,
            reason=r.reason,
            warnings=r.warnings,
            size_bytes=r.size_bytes,
            created_at=r.created_at,
            updated_at=r.updated_at,
            indexed_at=r.indexed_at,
        )


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    total: int
    limit: int
    offset: int


class DeletedDocument(BaseModel):
    document_id: str
    deleted: bool = True
    chunks_removed: int


class DocumentResult(BaseModel):
    """What happened to one document of a job."""

    document_id: str
    source: str
    outcome: Literal["queued", "added", "updated", "unchanged", "failed"]
    chunks: int = 0
    error: str | None = None
    reason: str | None = None
    warnings: list[str] = []

    @classmethod
    def of(cls, r: IngestResult) -> DocumentResult:
        return cls(
            document_id=r.document_id,
            source=r.source,
            outcome=r.outcome.value,  # type: ignore[arg-type]
            chunks=r.chunks,
            error=r.error,
            reason=r.reason,
            warnings=r.warnings,
        )


class UploadedDocument(BaseModel):
    document_id: str
    source: str
    status: Literal["queued"] = "queued"


class UploadAccepted(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"
    collection: str
    documents: list[UploadedDocument]


class JobOut(BaseModel):
    job_id: str
    status: JobStatus
    backend: str
    collection: str
    documents: list[DocumentResult]
    error: str | None = None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        return cls(
            job_id=job.job_id,
            status=job.status,
            backend=job.backend,
            collection=job.collection,
            documents=[DocumentResult(**r) for r in job.results],
            error=job.error,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class Health(BaseModel):
    """`/healthz`: without a key, `status` only; with one, what docqa serves."""

    status: Literal["ok", "degraded"]
    version: str | None = None
    documents: int | None = None
    chunks: int | None = None
    collection: str | None = None
    embedding_model: str | None = None
    generator: str | None = None
    components: dict[str, str] | None = None


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


class ComponentCheck(BaseModel):
    status: Literal["up", "down"]
    required: bool = Field(description="Whether docqa is not ready while this is down.")
    latency_ms: float
    error: str | None = None


class Readiness(BaseModel):
    """`/readyz`: without a key, `status` only; with one, each dependency."""

    status: Literal["ready", "not_ready"]
    version: str | None = None
    components: dict[str, ComponentCheck] | None = None
