"""Ingestion jobs: uploaded files indexed in the background, with per-document results.

A job and its results live in the record store's database, so `GET /v1/jobs/{id}` answers
from any process and a job interrupted by a restart is resumed from the saved uploads. A
`JobRunner` runs them: one worker thread in the API process by default
(ingestion/local_jobs.py), the `docqa_ingest` DAG with Airflow configured
(ingestion/airflow_jobs.py).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from docqa.db import as_utc, create_tables, get_engine, utcnow
from docqa.domain import DEFAULT_COLLECTION, JobStatus

metadata = MetaData()

jobs = Table(
    "docqa_jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("backend", String(32), nullable=False, default="in-process"),
    Column("collection", String(64), nullable=False, server_default=DEFAULT_COLLECTION),
    Column("external_id", Text),
    Column("document_ids", JSON, nullable=False, default=list),
    Column("results", JSON, nullable=False, default=list),
    Column("error", Text),
    # Times a runner started the job; one not finished after max_job_attempts is poison.
    Column("attempts", Integer, nullable=True),
    # The in-process runner that holds the job ("host:pid:runner"), and when it last said
    # it was alive: a restart resumes only jobs whose runner is gone.
    Column("owner", String(160), nullable=True),
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class UploadItem:
    """A file saved under the uploads folder, waiting to be indexed."""

    document_id: str
    source: str
    path: Path
    collection: str = DEFAULT_COLLECTION


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex[:20]


def queued_row(item: UploadItem) -> dict[str, object]:
    """A document's row in its job before the worker reached it."""
    return {"document_id": item.document_id, "source": item.source, "outcome": "queued"}


@dataclass
class JobRecord:
    job_id: str
    status: JobStatus
    backend: str
    document_ids: list[str]
    results: list[dict[str, Any]]
    external_id: str | None = None
    error: str | None = None
    attempts: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    collection: str = DEFAULT_COLLECTION
    owner: str | None = None
    heartbeat_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        data = dict(row._mapping)
        data["status"] = JobStatus(data["status"])
        data["document_ids"] = list(data.get("document_ids") or [])
        data["results"] = list(data.get("results") or [])
        data["attempts"] = int(data.get("attempts") or 0)
        for key in ("created_at", "updated_at", "heartbeat_at"):
            data[key] = as_utc(data.get(key))
        return cls(**data)


class JobStore:
    """SQL-backed ingestion jobs, in the record store's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)
        create_tables(self.engine, metadata)

    def create(
        self,
        job_id: str,
        document_ids: Iterable[str],
        *,
        backend: str = "in-process",
        collection: str = DEFAULT_COLLECTION,
    ) -> JobRecord:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(jobs).values(
                    job_id=job_id,
                    status=JobStatus.QUEUED,
                    backend=backend,
                    collection=collection,
                    document_ids=list(document_ids),
                    results=[],
                    created_at=now,
                    updated_at=now,
                )
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = utcnow()
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(**fields))

    def start_attempt(self, job_id: str, results: list[dict[str, Any]]) -> int:
        """Mark the job running and count the start, before any work; returns the count.
        A job whose count reaches the limit without finishing is not resumed again."""
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id)
                .values(
                    status=JobStatus.RUNNING,
                    results=results,
                    attempts=func.coalesce(jobs.c.attempts, 0) + 1,
                    updated_at=utcnow(),
                )
            )
        job = self.get(job_id)
        return job.attempts if job else 0

    def claim(self, job_id: str, owner: str) -> None:
        """`owner` holds the job from now on (it is queued in, or running on, that runner)."""
        self._set_owner(job_id, owner)

    def take_over(self, job_id: str, seen_owner: str | None, owner: str) -> bool:
        """`owner` takes the job from `seen_owner` (the runner found gone), unless another
        runner took it first: of several hosts that find the same job orphaned, one wins."""
        return self._set_owner(job_id, owner, jobs.c.owner.is_not_distinct_from(seen_owner))

    def _set_owner(self, job_id: str, owner: str, *conditions: Any) -> bool:
        """Stamp `owner` on the job, if it still meets `conditions`; whether it did."""
        now = utcnow()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, *conditions)
                .values(owner=owner, heartbeat_at=now, updated_at=now)
            )
        return bool(done.rowcount == 1)

    def beat(self, owner: str) -> None:
        """`owner` is alive: stamp the unfinished jobs it holds."""
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(
                    jobs.c.owner == owner,
                    jobs.c.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
                )
                .values(heartbeat_at=utcnow())
            )

    def delete(self, job_id: str) -> None:
        """Forget a job (one whose upload was rolled back before it could run)."""
        with self.engine.begin() as conn:
            conn.execute(delete(jobs).where(jobs.c.job_id == job_id))

    def get(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
        return JobRecord.from_row(row) if row else None

    def unfinished(self) -> builtins.list[JobRecord]:
        unfinished = (JobStatus.QUEUED, JobStatus.RUNNING)
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.status.in_(unfinished)))
            return [JobRecord.from_row(r) for r in rows]


class JobRunner(Protocol):
    """Runs ingestion jobs somewhere. `submit` returns at once; progress and the final
    status are written to the job store (or read from the engine by `refresh`)."""

    backend: str

    def submit(self, job_id: str, items: list[UploadItem]) -> None: ...

    def refresh(self, job: JobRecord) -> JobRecord:
        """The job as its engine sees it now (the stored copy for in-process jobs)."""

    def shutdown(self) -> None: ...
