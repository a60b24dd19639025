"""The things docqa's stages pass to each other, from parsed element to cited answer."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Element:
    """One structural piece of a parsed document (paragraph, title, table, list item)."""

    text: str
    category: str
    page: int | None = None
    section: tuple[str, ...] = ()


@dataclass
class ParsedDocument:
    source: str
    file_type: str
    elements: list[Element]
    warnings: list[str] = field(default_factory=list)

    @property
    def text_chars(self) -> int:
        return sum(len(e.text) for e in self.elements)


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage: what is embedded, indexed and cited."""

    chunk_id: str
    document_id: str
    text: str
    position: int
    source: str
    file_type: str
    page: int | None = None
    section: str = ""
    token_count: int = 0

    def metadata(self) -> dict[str, Any]:
        """Flat metadata as the vector store keeps it (no None values: Chroma refuses them)."""
        meta: dict[str, Any] = {
            "document_id": self.document_id,
            "position": self.position,
            "source": self.source,
            "file_type": self.file_type,
            "section": self.section,
            "token_count": self.token_count,
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta

    @classmethod
    def from_stored(cls, chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
        return cls(
            chunk_id=chunk_id,
            document_id=str(meta["document_id"]),
            text=text,
            position=int(meta.get("position", 0)),
            source=str(meta.get("source", "")),
            file_type=str(meta.get("file_type", "")),
            page=meta.get("page"),
            section=str(meta.get("section", "")),
            token_count=int(meta.get("token_count", 0)),
        )


@dataclass
class ScoredChunk:
    """A chunk ranked for a question. `score` is the fused rank score; `relevance` is the
    cosine similarity of chunk and question, comparable across questions."""

    chunk: Chunk
    score: float
    relevance: float | None = None
    dense_rank: int | None = None
    lexical_rank: int | None = None
    # One unit vector per sentence of the chunk (`docqa.text.passage_sentences`), kept at
    # ingestion; a zero row where none was kept. None: the index kept none.
    sentence_vectors: Any = field(default=None, repr=False, compare=False)
    # Per sentence of the chunk (`passage_sentences`), how well its words match the
    # question's (retrieval/late_interaction.py); None: late interaction is off.
    sentence_matches: Any = field(default=None, repr=False, compare=False)


@dataclass
class Citation:
    document_id: str
    source: str
    page: int | None
    section: str
    chunk_id: str
    text: str
    score: float

    @classmethod
    def of(cls, hit: ScoredChunk, quote: str | None = None) -> Citation:
        c = hit.chunk
        return cls(
            document_id=c.document_id,
            source=c.source,
            page=c.page,
            section=c.section,
            chunk_id=c.chunk_id,
            text=quote if quote is not None else c.text,
            score=round(hit.relevance if hit.relevance is not None else hit.score, 4),
        )


NOT_FOUND_ANSWER = "I could not find this in the documents."


@dataclass
class Answer:
    text: str
    found: bool
    citations: list[Citation]
    timings_ms: dict[str, float] = field(default_factory=dict)
    degraded: bool = False
    cached: bool = False
    usage: dict[str, int] | None = None
    warnings: list[str] = field(default_factory=list)
    # Why generation stopped, as the model server said: "stop", or "length" when the answer
    # reached the token limit and is cut short. None for answers no LLM wrote.
    finish_reason: str | None = None


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    INDEXING = "indexing"
    INDEXED = "indexed"
    FAILED = "failed"
    DELETING = "deleting"


class JobStatus(StrEnum):
    """Where an ingestion job stands; `succeeded` and `failed` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class IngestOutcome(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass
class IngestResult:
    source: str
    document_id: str
    outcome: IngestOutcome
    chunks: int = 0
    error: str | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """Plain data, as a job stores it and an Airflow task returns it."""
        row = dataclasses.asdict(self)
        row["outcome"] = self.outcome.value
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> IngestResult:
        return cls(
            source=str(row["source"]),
            document_id=str(row["document_id"]),
            outcome=IngestOutcome(row["outcome"]),
            chunks=int(row.get("chunks") or 0),
            error=row.get("error"),
            reason=row.get("reason"),
            warnings=list(row.get("warnings") or []),
        )


def job_status_of(results: list[IngestResult]) -> JobStatus:
    """A job fails when any of its documents failed."""
    failed = any(r.outcome == IngestOutcome.FAILED for r in results)
    return JobStatus.FAILED if failed else JobStatus.SUCCEEDED


DEFAULT_COLLECTION = "default"
COLLECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)


def check_collection_name(name: str) -> str:
    """:raises ValueError: not a collection name (lower-case letters, digits, '_' and '-',
    at most 63, starting with a letter or digit)."""
    if not _COLLECTION_NAME.fullmatch(name):
        raise ValueError(
            f"{name[:80]!r} is not a collection name: use 1-63 lower-case letters, digits, "
            "'_' or '-', starting with a letter or digit"
        )
    return name


def document_id_for(source: str, collection: str = DEFAULT_COLLECTION) -> str:
    """Deterministic id: the same source in the same collection always maps to the same
    document. The default collection keeps the ids documents had before collections, and
    the same file name in two collections is two documents."""
    key = source if collection == DEFAULT_COLLECTION else f"{collection}\x00{source}"
    return "doc_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
