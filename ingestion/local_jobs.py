"""Ingestion jobs run in this process: one worker thread (the embedded index takes one
writer), the default when no Airflow is configured.

A job interrupted by a restart is resumed at the next start, but only `max_attempts`
times in all: a file that takes the process down every time it is read would otherwise
crash-loop the server. Past that, its unfinished documents fail with reason
`interrupted_repeatedly`. After every job, the uploads folder is swept
(ingestion/uploads.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from docqa.domain import DEFAULT_COLLECTION, IngestResult, JobStatus, job_status_of
from docqa.errors import DocqaError
from ingestion.jobs import JobRecord, JobStore, UploadItem, queued_row
from ingestion.pipeline import Indexer
from ingestion.records import RecordStore

log = logging.getLogger(__name__)


class InProcessJobRunner:
    backend = "in-process"

    def __init__(
        self,
        *,
        jobs: JobStore,
        records: Callable[[str], RecordStore],
        indexer: Callable[[str], Indexer],
        max_attempts: int = 2,
        after_job: Callable[[], object] | None = None,
    ) -> None:
        """:param records: the record store of a collection (by name).
        :param indexer: the indexer of a collection's serving index when a job starts (a
        re-index may have switched it since the last one).
        :param max_attempts: starts a job gets before an interrupted one is given up.
        :param after_job: called after each job (housekeeping); its errors are logged."""
        self.jobs = jobs
        self.records = records
        self.indexer = indexer
        self.max_attempts = max_attempts
        self.after_job = after_job
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
        rows = [queued_row(i) for i in items]
        results: list[IngestResult] = []
        try:
            # Counted before any work: a crash from here on is an interrupted attempt.
            self.jobs.start_attempt(job_id, rows)
            indexer = self.indexer(items[0].collection if items else DEFAULT_COLLECTION)
            for n, item in enumerate(items):
                # recorded: a document deleted while queued or running is not indexed again.
                result = indexer.ingest_file(
                    item.path, source=item.source, stored_path=str(item.path), recorded=True
                )
                results.append(result)
                rows[n] = result.to_row()
                self.jobs.update(job_id, results=rows)
            self.jobs.update(job_id, status=job_status_of(results), results=rows)
        except DocqaError as exc:
            self.jobs.update(job_id, status=JobStatus.FAILED, error=exc.message, results=rows)
        except Exception as exc:
            log.exception("ingestion job %s crashed", job_id)
            self.jobs.update(
                job_id, status=JobStatus.FAILED, error=f"internal error: {exc}", results=rows
            )
        finally:
            if self.after_job is not None:
                try:
                    self.after_job()
                except Exception:
                    log.exception("housekeeping after ingestion job %s failed", job_id)
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
        for job in self.jobs.unfinished():
            if job.attempts >= self.max_attempts:
                self._give_up(job)
                continue
            items = []
            records = self.records(job.collection)
            for row in job.results or [{"document_id": d} for d in job.document_ids]:
                record = records.get(str(row["document_id"]))
                if record and record.stored_path and Path(record.stored_path).exists():
                    items.append(
                        UploadItem(
                            record.document_id,
                            record.source,
                            Path(record.stored_path),
                            job.collection,
                        )
                    )
            if items:
                self.submit(job.job_id, items)
                resumed += 1
            else:
                self.jobs.update(
                    job.job_id, status=JobStatus.FAILED, error="interrupted; the uploads are gone"
                )
        return resumed

    def _give_up(self, job: JobRecord) -> None:
        """Fail a job that was interrupted `max_attempts` times, and its unfinished
        documents (an earlier indexed version of one stays searchable)."""
        error = (
            f"ingestion was interrupted {job.attempts} times (the server stopped or crashed "
            "while this job ran), so it is not resumed again; if the file is sound, upload it "
            "again"
        )
        rows = job.results or [
            {"document_id": d, "source": "", "outcome": "queued"} for d in job.document_ids
        ]
        records = self.records(job.collection)
        for row in rows:
            if row.get("outcome") not in (None, "queued"):
                continue  # finished before the interruptions: its result stands
            record = records.get(str(row["document_id"]))
            if record is not None:
                records.mark_failed(
                    record.document_id,
                    source=record.source,
                    file_type=record.file_type,
                    error=error,
                    reason="interrupted_repeatedly",
                    must_exist=True,
                )
                row["source"] = row.get("source") or record.source
            row.update(outcome="failed", error=error, reason="interrupted_repeatedly")
        log.error("ingestion job %s: %s", job.job_id, error)
        self.jobs.update(job.job_id, status=JobStatus.FAILED, error=error, results=rows)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
