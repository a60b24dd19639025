"""Ingestion jobs run in this process: one worker thread (the embedded index takes one
writer), the default when no Airflow is configured.

A job interrupted by a restart is resumed at the next start, but only `max_attempts`
times in all: a file that takes the process down every time it is read would otherwise
crash-loop the server. Past that, its unfinished documents fail with reason
`interrupted_repeatedly`. After every job, the uploads folder is swept
(ingestion/uploads.py).

Each runner claims the jobs it holds and stamps them every HEARTBEAT_S seconds, so a
restart (one API worker of several, or another host sharing the database) resumes only the
jobs whose runner is gone: on this host, its process has ended; elsewhere, its stamps
stopped more than STALE_S seconds ago. A running server also looks again every STALE_S
seconds (`watch`): a host that never comes back does not leave its jobs queued until some
server restarts. Taking a job over is a compare-and-set on its owner, so of several
servers that find the same job orphaned, one runs it."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from docqa.db import utcnow
from docqa.domain import DEFAULT_COLLECTION, IngestResult, JobStatus, job_status_of
from docqa.errors import DocqaError
from ingestion.jobs import JobRecord, JobStore, UploadItem, queued_row
from ingestion.pipeline import Indexer
from ingestion.records import RecordStore

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_S = 60.0


def runner_id() -> str:
    """This runner's name in the job table: host, process, and a tag for this runner."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _host_and_pid(owner: str) -> tuple[str, str]:
    host, _, rest = owner.partition(":")
    return host, rest.partition(":")[0]


def _younger_than(job: JobRecord, seconds: float) -> bool:
    """Whether the job changed less than `seconds` ago."""
    return job.updated_at is not None and utcnow() - job.updated_at < timedelta(seconds=seconds)


def owner_gone(job: JobRecord, me: str) -> bool:
    """Whether the runner that holds `job` can no longer run it (so a restart may)."""
    if not job.owner or job.owner == me:
        return True
    host, pid_text = _host_and_pid(job.owner)
    my_host, my_pid = _host_and_pid(me)
    stale = job.heartbeat_at is None or utcnow() - job.heartbeat_at > timedelta(seconds=STALE_S)
    if host != my_host:
        return stale
    if pid_text == my_pid:
        return True  # an earlier runner of this process (one runner serves a process)
    try:
        os.kill(int(pid_text), 0)
    except (ProcessLookupError, ValueError):
        return True
    except PermissionError:
        pass  # alive, another user's
    # Alive by its pid; a stale stamp means the pid was reused or the runner hangs.
    return stale


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
        self.owner = runner_id()
        self._stopped = threading.Event()
        self._heart: threading.Thread | None = None

    def submit(self, job_id: str, items: list[UploadItem]) -> None:
        self.jobs.claim(job_id, self.owner)
        self._start_heartbeat()
        with self._count_lock:
            self._pending += 1
            self._idle.clear()
        self._pool.submit(self._run, job_id, items)

    def _start_heartbeat(self) -> None:
        with self._count_lock:
            if self._heart is not None:
                return
            self._heart = threading.Thread(
                target=self._beat, name="docqa-ingest-heartbeat", daemon=True
            )
        self._heart.start()

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_S):
            if not self._pending:
                continue  # holding no job: nothing to stamp, no write to take
            try:
                self.jobs.beat(self.owner)
            except Exception:  # a database hiccup must not end the stamps for good
                log.exception("could not stamp this runner's ingestion jobs")

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

    def resume_unfinished(self, unclaimed_after_s: float = 0.0) -> int:
        """Re-submit the unfinished jobs whose runner is gone (a restart interrupted them, or
        their host stopped), for the uploads still on disk. A job no runner has claimed is
        taken only once it is `unclaimed_after_s` old: while a server is up, another worker
        may be between creating a job and claiming it."""
        resumed = 0
        for job in self.jobs.unfinished():
            if job.owner == self.owner:
                continue  # queued or running here
            if job.owner is None and _younger_than(job, unclaimed_after_s):
                continue
            if not owner_gone(job, self.owner):
                log.info("ingestion job %s is held by %s, which is alive", job.job_id, job.owner)
                continue
            if not self.jobs.take_over(job.job_id, job.owner, self.owner):
                log.info("ingestion job %s was taken over by another runner", job.job_id)
                continue
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

    def watch(self, interval_s: float = STALE_S) -> None:
        """Resume orphaned jobs every `interval_s` seconds until shutdown, in a thread."""

        def loop() -> None:
            while not self._stopped.wait(interval_s):
                try:
                    resumed = self.resume_unfinished(unclaimed_after_s=STALE_S)
                except Exception:  # a database hiccup must not end the watch for good
                    log.exception("could not look for orphaned ingestion jobs")
                    continue
                if resumed:
                    log.warning("took over %d ingestion jobs whose runner is gone", resumed)

        threading.Thread(target=loop, name="docqa-ingest-watch", daemon=True).start()

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
        self._stopped.set()
