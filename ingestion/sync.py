"""Mirror a source into the index: new files are ingested, changed files re-indexed, and
documents whose file is gone from the source are removed.

A sync runs in three steps, each safe to repeat (the docqa_sync DAG runs them as tasks):
  1. `plan_sync`: list the source and diff it against the record store by source and
     content hash; nothing is written except remembered file markers;
  2. `ingest_planned`: ingest the new and changed files (per-file failures are recorded on
     the document, as for any ingest);
  3. `prune_deleted`: remove the documents whose files are gone, unless the deletion guard
     blocks it.

The deletion guard: a source that cannot be listed, or was listed only in part, is never
read as "everything was deleted", and a sync that would remove more than
`DOCQA_SYNC__MAX_DELETE_SHARE` of a source's documents at once deletes nothing. Both say
why. Each file's change marker (size and mtime, or the object's ETag) is remembered with
the content hash it had, so an unchanged source costs a listing, not a read of every byte.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, insert, select, update

from docqa.db import create_tables, utcnow
from docqa.domain import DocumentStatus, IngestOutcome, IngestResult
from docqa.errors import DocqaError, NotFoundError
from ingestion.pipeline import Indexer, file_digest
from ingestion.records import RecordStore
from ingestion.sources import Source, SourceFile, SourceUnavailable

metadata = MetaData()

# What each synced file looked like when its bytes were last hashed: a cheap marker and
# the content hash it went with. Lives beside the record store.
sync_files = Table(
    "docqa_sync_files",
    metadata,
    Column("document_id", String(64), primary_key=True),
    Column("marker", String(255), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class DeletionAborted(DocqaError):
    """The deletion guard stopped a sync from removing documents; nothing was deleted."""

    status_code = 409
    error_type = "deletion_aborted"


# -- remembered markers ------------------------------------------------------------------


class SyncState:
    """Which bytes each synced file had when last hashed, keyed by document id."""

    def __init__(self, records: RecordStore) -> None:
        self.engine = records.engine
        create_tables(self.engine, metadata)

    def markers(self) -> dict[str, tuple[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(sync_files.c.document_id, sync_files.c.marker, sync_files.c.content_hash)
            )
            return {r[0]: (r[1], r[2]) for r in rows}

    def remember(self, markers: dict[str, tuple[str, str]]) -> None:
        """Store (marker, content hash) per document id, all in one transaction."""
        if not markers:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            for document_id, (marker, content_hash) in markers.items():
                values = {"marker": marker, "content_hash": content_hash, "updated_at": now}
                changed = conn.execute(
                    update(sync_files)
                    .where(sync_files.c.document_id == document_id)
                    .values(**values)
                ).rowcount
                if not changed:
                    conn.execute(insert(sync_files).values(document_id=document_id, **values))

    def forget(self, document_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sync_files).where(sync_files.c.document_id == document_id))


# -- plan ------------------------------------------------------------------------------


@dataclass
class PlannedFile:
    """A new or changed file to ingest."""

    key: str
    source: str
    size: int
    marker: str
    content_hash: str
    change: str  # "new" or "changed"


@dataclass
class PlannedDeletion:
    document_id: str
    source: str


@dataclass
class SyncPlan:
    """What a sync of one source will do. Plain data, so it travels between DAG tasks."""

    source_uri: str
    error: str | None = None  # the source could not be listed: nothing will change
    listed: int = 0
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    to_ingest: list[PlannedFile] = field(default_factory=list)
    unchanged: int = 0
    still_failing: int = 0  # failed before with these very bytes: not retried
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    to_delete: list[PlannedDeletion] = field(default_factory=list)
    owned: int = 0  # documents of this source in the record store before the sync
    deletion_blocked: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncPlan:
        data = dict(data)
        data["to_ingest"] = [PlannedFile(**f) for f in data.get("to_ingest", [])]
        data["to_delete"] = [PlannedDeletion(**d) for d in data.get("to_delete", [])]
        data["unreadable"] = [tuple(u) for u in data.get("unreadable", [])]
        return cls(**data)


def plan_sync(
    records: RecordStore, source: Source, *, fingerprint: str, max_delete_share: float
) -> SyncPlan:
    """List the source and diff it against the record store. Never raises for a source
    that cannot be listed: the plan carries the error and changes nothing.

    :param fingerprint: what the index is built with now (`Indexer.fingerprint`): a file
        indexed with anything else is planned again.
    """
    plan = SyncPlan(source_uri=source.uri)
    try:
        listing = source.list_files()
    except SourceUnavailable as exc:
        plan.error = exc.message
        plan.deletion_blocked = f"{source.uri} cannot be listed: {exc.message}"
        return plan
    plan.listed = len(listing.files)
    plan.complete = listing.complete
    plan.problems = listing.problems
    plan.skipped = listing.skipped

    state = SyncState(records)
    markers = state.markers()
    owned = {r.source: r for r in records.list() if source.owns(r.source)}
    plan.owned = len(owned)
    seen: set[str] = set()
    refreshed: dict[str, tuple[str, str]] = {}  # unchanged files with a new marker
    for f in listing.files:
        seen.add(f.source)
        document_id = records.document_id(f.source)
        record = owned.get(f.source)
        remembered = markers.get(document_id)
        if remembered is not None and remembered[0] == f.marker:
            digest = remembered[1]
        else:
            try:
                with source.fetch(f) as path:
                    digest, _ = file_digest(path)
            except OSError as exc:
                plan.unreadable.append((f.source, str(exc)))
                continue
        if record is not None and record.status == DocumentStatus.INDEXED:
            if record.content_hash == digest and record.index_fingerprint == fingerprint:
                plan.unchanged += 1
                if remembered != (f.marker, digest):
                    refreshed[document_id] = (f.marker, digest)
                continue
        if (
            record is not None
            and record.status == DocumentStatus.FAILED
            and remembered is not None
            and remembered[1] == digest
        ):
            plan.still_failing += 1
            continue
        change = "changed" if record is not None and record.chunk_ids else "new"
        plan.to_ingest.append(PlannedFile(f.key, f.source, f.size, f.marker, digest, change))
    state.remember(refreshed)

    plan.to_delete = [
        PlannedDeletion(r.document_id, s) for s, r in sorted(owned.items()) if s not in seen
    ]
    plan.deletion_blocked = deletion_guard(plan, max_delete_share)
    return plan


def deletion_guard(plan: SyncPlan, max_delete_share: float) -> str | None:
    """Why the planned deletions must not run, or None when they may."""
    if not plan.to_delete:
        return None
    if plan.error:
        return f"{plan.source_uri} cannot be listed: {plan.error}"
    if not plan.complete:
        return (
            f"the listing of {plan.source_uri} is incomplete ({'; '.join(plan.problems[:3])}), "
            "so a missing file may only be unreadable"
        )
    share = len(plan.to_delete) / max(plan.owned, 1)
    if share > max_delete_share:
        return (
            f"{len(plan.to_delete)} of the {plan.owned} documents of {plan.source_uri} "
            f"({share:.0%}) would be deleted, over the {max_delete_share:.0%} guard "
            "(DOCQA_SYNC__MAX_DELETE_SHARE). If the files really are gone, sync again with "
            "the guard raised"
        )
    return None


# -- ingest and prune ----------------------------------------------------------------------


def ingest_planned(
    indexer: Indexer, source: Source, files: list[PlannedFile]
) -> list[IngestResult]:
    """Ingest new and changed files. A file that fails is recorded as failed and the rest
    go on; a failure of the index itself (Chroma down) raises, so a retry can resume."""
    state = SyncState(indexer.records)
    results = []
    for planned in files:
        document_id = indexer.records.document_id(planned.source)
        file = SourceFile(planned.key, planned.source, planned.size, planned.marker)
        try:
            with source.fetch(file) as path:
                # The marker and hash that go together are the ones read now: the file may
                # have changed since it was planned.
                digest, _ = file_digest(path)
                result = indexer.ingest_file(path, source=planned.source)
        except OSError as exc:
            result = IngestResult(
                planned.source,
                document_id,
                IngestOutcome.FAILED,
                error=f"cannot read: {exc}",
                reason="unreadable",
            )
        else:
            marker = planned.marker if digest == planned.content_hash else "re-read"
            state.remember({document_id: (marker, digest)})
        results.append(result)
    return results


def prune_deleted(indexer: Indexer, source: Source, plan: SyncPlan) -> list[PlannedDeletion]:
    """Remove the documents whose files are gone.

    :raises DeletionAborted: the deletion guard blocked it; nothing was deleted.
    """
    if plan.deletion_blocked:
        raise DeletionAborted(
            f"deletion aborted, nothing deleted: {plan.deletion_blocked}", param="source"
        )
    if not plan.to_delete:
        return []
    state = SyncState(indexer.records)
    deleted = []
    for gone in plan.to_delete:
        # The plan may be an hour old by now: a file that came back is not deleted.
        if source.exists(gone.source):
            continue
        try:
            indexer.delete_document(gone.document_id)
        except NotFoundError:
            pass  # deleted already (a retried task, or someone else)
        state.forget(gone.document_id)
        deleted.append(gone)
    return deleted


# -- the whole sync --------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What a sync did, with the counts a user checks."""

    source: str
    listed: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[dict[str, str | None]] = field(default_factory=list)
    error: str | None = None
    deletion_blocked: str | None = None
    pending_deletions: int = 0

    @property
    def ok(self) -> bool:
        return not (self.error or self.deletion_blocked or self.failed)

    def summary(self) -> str:
        if self.error:
            return f"{self.source}: cannot be listed, nothing changed: {self.error}"
        text = (
            f"{self.source}: {self.listed} files listed: {self.added} added, {self.updated} "
            f"updated, {self.unchanged} unchanged, {self.deleted} deleted, {self.failed} failed"
        )
        if self.skipped:
            text += f" ({self.skipped} skipped: unsupported type)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def report_of(
    plan: SyncPlan, results: list[IngestResult], deleted: list[PlannedDeletion] | None
) -> SyncReport:
    """Counts from a plan, its ingest results and the deletions made (None: blocked)."""
    report = SyncReport(
        source=plan.source_uri,
        listed=plan.listed,
        unchanged=plan.unchanged + plan.still_failing,
        skipped=len(plan.skipped),
        error=plan.error,
    )
    for r in results:
        if r.outcome == IngestOutcome.ADDED:
            report.added += 1
        elif r.outcome == IngestOutcome.UPDATED:
            report.updated += 1
        elif r.outcome == IngestOutcome.UNCHANGED:
            report.unchanged += 1
        else:
            report.failed += 1
            report.failures.append({"source": r.source, "reason": r.reason, "error": r.error})
    for src, why in plan.unreadable:
        report.failed += 1
        report.failures.append({"source": src, "reason": "unreadable", "error": why})
    if deleted is None:
        report.deletion_blocked = plan.deletion_blocked
        report.pending_deletions = len(plan.to_delete)
    else:
        report.deleted = len(deleted)
    return report


def sync_source(indexer: Indexer, source: Source, *, max_delete_share: float) -> SyncReport:
    """Plan, ingest and prune one source in this process (`docqa sync`)."""
    plan = plan_sync(
        indexer.records,
        source,
        fingerprint=indexer.fingerprint,
        max_delete_share=max_delete_share,
    )
    results = ingest_planned(indexer, source, plan.to_ingest)
    deleted: list[PlannedDeletion] | None
    try:
        deleted = prune_deleted(indexer, source, plan)
    except DeletionAborted:
        deleted = None
    return report_of(plan, results, deleted)


def summarize_run(
    plans: list[dict[str, Any]],
    ingested: list[list[dict[str, Any]]],
    pruned: list[dict[str, Any]],
    *,
    sources: int | None = None,
) -> tuple[list[SyncReport], list[str]]:
    """The reports of a docqa_sync run from what its tasks returned, and what went wrong:
    a source not listed, deletions blocked, or a task whose results are missing because it
    failed."""
    rows = [row for batch in ingested for row in batch]
    by_source: dict[str, dict[str, Any]] = {r["source"]: r for r in rows}
    deleted = {p["source_uri"]: p["deleted"] for p in pruned}
    reports, problems = [], []
    if sources is not None and len(plans) < sources:
        problems.append(f"{sources - len(plans)} of {sources} sources could not be planned")
    for data in plans:
        plan = SyncPlan.from_dict(data)
        results = [
            IngestResult.from_row(r)
            for f in plan.to_ingest
            if (r := by_source.get(f.source)) is not None
        ]
        gone = deleted.get(plan.source_uri)
        report = report_of(plan, results, None if gone is None else [])
        report.deleted = len(gone or [])
        reports.append(report)
        if plan.error:
            problems.append(f"{plan.source_uri} cannot be listed, nothing changed: {plan.error}")
        elif plan.deletion_blocked:
            problems.append(f"deletion aborted, nothing deleted: {plan.deletion_blocked}")
        elif plan.to_delete and gone is None:
            problems.append(f"the deletions of {plan.source_uri} did not run")
        if len(results) < len(plan.to_ingest):
            problems.append(
                f"{len(plan.to_ingest) - len(results)} files of {plan.source_uri} were not "
                "ingested (an ingest task failed; the next sync retries them)"
            )
    return reports, problems
