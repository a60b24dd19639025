"""Ingestion jobs: uploaded files indexed in the background, with per-document results.

A job and its results live in the record store, so `GET /v1/jobs/{id}` answers from any
process and a job interrupted by a restart is resumed from the saved uploads. The embedded
runner is one worker thread in the API process (the embedded index takes one writer);
with Airflow configured, a runner that triggers the `docqa_ingest` DAG takes its place.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from docqa.domain import IngestOutcome, IngestResult
from docqa.errors import DocqaError

if TYPE_CHECKING:
    from docqa.services import Docqa
    from ingestion.records import JobRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadItem:
    """A file saved under the uploads folder, waiting to be indexed."""

    document_id: str
    source: str
    path: Path


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex[:20]


def result_row(result: IngestResult) -> dict[str, object]:
    row = dataclasses.asdict(result)
    row["outcome"] = result.outcome.value
    return row


def queued_row(item: UploadItem) -> dict[str, object]:
    return {"document_id": item.document_id, "source": item.source, "outcome": "queued"}


def job_status(results: list[IngestResult]) -> str:
    return "failed" if any(r.outcome == IngestOutcome.FAILED for r in results) else "succeeded"


class JobRunner(Protocol):
    """Runs ingestion jobs somewhere. `submit` returns at once; progress and the final
    status are written to the record store (or read from the engine by `refresh`)."""

    backend: str

    def submit(self, job_id: str, items: list[UploadItem]) -> None: ...

    def refresh(self, job: JobRecord) -> JobRecord:
        """The job as its engine sees it now (the record store copy for in-process jobs)."""

    def shutdown(self) -> None: ...


class InProcessJobRunner:
    backend = "in-process"

    def __init__(self, docqa: Docqa) -> None:
        self.docqa = docqa
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docqa-ingest")
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._count_lock = threading.Lock()

    def submit(self, job_id: str, items: list[UploadItem]) -> None:
        with self._count_lock:
            self._pending += 1
            self._idle.clear()
        self._pool.submit(self._run, job_id, items)

    def refresh(self, job: JobRecord) -> JobRecord:
        return job

    def _run(self, job_id: str, items: list[UploadItem]) -> None:
        records = self.docqa.records
        rows = [queued_row(i) for i in items]
        results: list[IngestResult] = []
        try:
            records.update_job(job_id, status="running", results=rows)
            indexer = self.docqa.indexer()
            for n, item in enumerate(items):
                result = indexer.ingest_file(
                    item.path, source=item.source, stored_path=str(item.path)
                )
                results.append(result)
                rows[n] = result_row(result)
                records.update_job(job_id, results=rows)
            records.update_job(job_id, status=job_status(results), results=rows)
        except DocqaError as exc:
            records.update_job(job_id, status="failed", error=exc.message, results=rows)
        except Exception as exc:
            log.exception("ingestion job %s crashed", job_id)
            records.update_job(
                job_id, status="failed", error=f"internal error: {exc}", results=rows
            )
        finally:
            with self._count_lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """For tests and shutdown: wait until no job is running or queued."""
        return self._idle.wait(timeout)

    def resume_unfinished(self) -> int:
        """Re-submit jobs a restart interrupted, for the uploads still on disk."""
        resumed = 0
        for job in self.docqa.records.unfinished_jobs():
            items = []
            for row in job.results or [{"document_id": d} for d in job.document_ids]:
                record = self.docqa.records.get(str(row["document_id"]))
                if record and record.stored_path and Path(record.stored_path).exists():
                    items.append(
                        UploadItem(record.document_id, record.source, Path(record.stored_path))
                    )
            if items:
                self.submit(job.job_id, items)
                resumed += 1
            else:
                self.docqa.records.update_job(
                    job.job_id, status="failed", error="interrupted; the uploads are gone"
                )
        return resumed

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
