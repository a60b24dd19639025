"""Ingestion cut into batches that executors can run side by side (the docqa_ingest DAG).

A run names documents (uploads already recorded, by id) or paths (files and folders on a
disk the workers share). `plan_batches` turns them into batches of plain data, each batch
is ingested by `ingest_batch`, and `finish_job` writes the per-document results to the
upload's job. Every step is idempotent: chunk ids derive from the content, and an
unchanged document is skipped, so a retried batch neither duplicates nor loses anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docqa.domain import IngestOutcome, IngestResult, JobStatus
from docqa.errors import DocqaError
from ingestion.jobs import JobStore
from ingestion.pipeline import Indexer, iter_files, source_for
from ingestion.records import RecordStore

Item = dict[str, Any]  # {"document_id", "source", "path", "stored_path"}


def plan_batches(
    records: RecordStore,
    *,
    document_ids: list[str] | None = None,
    paths: list[str] | None = None,
    batch_size: int | None = None,
    default_batch_size: int,
    source_dirs: list[str] | None = None,
) -> list[list[Item]]:
    """The documents of a run, in batches of `batch_size` (the run's conf) or
    `default_batch_size` (DOCQA_AIRFLOW__INGEST_BATCH_SIZE).

    :param source_dirs: the folders `paths` must lie in (`allowed_source_dirs`); whoever
        can trigger a run must not make the workers read any file they can.
    :raises DocqaError: nothing to ingest, a document id or path that does not exist, or a
        path outside the source folders.
    """
    for name, value in (("document_ids", document_ids), ("paths", paths)):
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise DocqaError(f"conf {name!r} must be a list of strings", param=name)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise DocqaError("conf 'batch_size' must be a positive whole number", param="batch_size")
    size = batch_size or default_batch_size
    items: list[Item] = []
    unknown = []
    for document_id in document_ids or []:
        record = records.get(document_id)
        if record is None:
            unknown.append(document_id)
            continue
        # An upload is read from its stored copy; a document ingested from a shared disk
        # is read from where it was found.
        path = record.stored_path or record.source
        items.append(
            {
                "document_id": document_id,
                "source": record.source,
                "path": path,
                "stored_path": record.stored_path,
                "recorded": True,
            }
        )
    if unknown:
        raise DocqaError(f"no document with id {', '.join(unknown)}", param="document_ids")
    if paths:
        confine_paths(paths, source_dirs or [])
    missing = [p for p in paths or [] if not Path(p).exists()]
    if missing:
        raise DocqaError(f"no such file or folder: {', '.join(missing)}", param="paths")
    for file in iter_files(Path(p) for p in paths or []):
        if paths:
            confine_paths([str(file)], source_dirs or [])  # a link inside may lead out
        source = source_for(file)
        items.append(
            {
                "document_id": records.document_id(source),
                "source": source,
                "path": str(file),
                "stored_path": None,
            }
        )
    if not items:
        raise DocqaError("nothing to ingest: give document_ids or paths", param="conf")
    return [items[i : i + size] for i in range(0, len(items), size)]


def allowed_source_dirs(ingestion_dirs: list[str], sync_sources: list[str]) -> list[str]:
    """The folders a run's `paths` may name: DOCQA_INGESTION__SOURCE_DIRS and the local
    folders among DOCQA_SYNC__SOURCES."""
    return [*ingestion_dirs, *(s for s in sync_sources if "://" not in s)]


def confine_paths(paths: list[str], source_dirs: list[str]) -> None:
    """Refuse any path that does not lie, once links and `..` are resolved, inside one of
    `source_dirs`.

    :raises DocqaError: naming the paths refused and the setting that allows more.
    """
    roots = [Path(d).expanduser().resolve() for d in source_dirs]
    outside = [
        p for p in paths if not any(Path(p).expanduser().resolve().is_relative_to(r) for r in roots)
    ]
    if not outside:
        return
    if not roots:
        where = "no source folders are configured"
    else:
        where = "allowed: " + ", ".join(str(r) for r in roots)
    raise DocqaError(
        f"conf 'paths' may only name files in the configured source folders; refused "
        f"{', '.join(outside)} ({where}; set DOCQA_INGESTION__SOURCE_DIRS)",
        param="paths",
    )


def ingest_batch(indexer: Indexer, items: list[Item]) -> list[dict[str, Any]]:
    """Ingest one batch; returns one result row per document.

    Failures of a document (bad file, missing upload) are recorded on the document and
    returned; a failure of the index itself raises so the task is retried.
    """
    rows = []
    for item in items:
        result = indexer.ingest_file(
            Path(item["path"]),
            source=item["source"],
            stored_path=item.get("stored_path"),
            # A document named by id was recorded by the API: if it is gone, it was deleted.
            recorded=bool(item.get("recorded")),
        )
        if result.outcome == IngestOutcome.FAILED and result.reason == "not_found":
            _record_missing(indexer.records, item, result)
        rows.append(result.to_row())
    return rows


def _record_missing(records: RecordStore, item: Item, result: IngestResult) -> None:
    # The indexer does not record a file that is not there (a mistyped path is no
    # document), but an upload whose stored copy vanished must not stay queued forever.
    record = records.get(item["document_id"])
    if record is not None:
        records.mark_failed(
            item["document_id"],
            source=record.source,
            file_type=record.file_type,
            error=result.error or "the file is gone",
            reason="not_found",
        )


def finish_job(jobs: JobStore, job_id: str | None, batches: list[list[dict[str, Any]]]) -> str:
    """Write the results of all batches to the upload's job; returns the job status."""
    rows = [row for batch in batches for row in batch]
    failed = any(r["outcome"] == IngestOutcome.FAILED for r in rows)
    status = JobStatus.FAILED if failed else JobStatus.SUCCEEDED
    if job_id and jobs.get(job_id) is not None:
        jobs.update(job_id, status=status, results=rows)
    return status.value
