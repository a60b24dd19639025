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

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, insert, select, update

from docqa.db import create_tables, utcnow
from docqa.domain import DocumentStatus, IngestOutcome, IngestResult, document_id_for
from docqa.errors import ConfigurationError, DocqaError, NotFoundError

if TYPE_CHECKING:
    from docqa.services import Docqa
    from docqa.settings import Settings
    from ingestion.records import RecordStore

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


class SourceUnavailable(DocqaError):
    """The source itself cannot be listed (missing folder, no permission, bucket gone)."""

    status_code = 503
    error_type = "source_unavailable"


class DeletionAborted(DocqaError):
    """The deletion guard stopped a sync from removing documents; nothing was deleted."""

    status_code = 409
    error_type = "deletion_aborted"


@dataclass(frozen=True)
class SourceFile:
    """One file of a source."""

    key: str  # path below the source root, '/'-separated
    source: str  # the document's recorded source: absolute path or s3://bucket/key
    size: int
    marker: str  # changes whenever the content may have: size+mtime, or the ETag


@dataclass
class Listing:
    files: list[SourceFile]
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unsupported file types


class Source(Protocol):
    """Somewhere documents live. Listing is the only way a sync learns that a file is gone,
    so a listing must either be complete or say that it is not."""

    uri: str

    def list_files(self) -> Listing:
        """Every supported file under the source, hidden files skipped.

        :raises SourceUnavailable: the source cannot be listed at all.
        :returns: with `complete=False` and the problems named when parts could not be
            listed (an unreadable subfolder); files there may or may not still exist.
        """

    def owns(self, source: str) -> bool:
        """Whether a document's recorded source lies under this source."""

    def fetch(self, file: SourceFile) -> contextlib.AbstractContextManager[Path]:
        """A local, readable copy of the file for the duration of the context.

        :raises OSError: the file cannot be read (it is recorded as a failed document).
        """

    def exists(self, source: str) -> bool:
        """Whether the document's file is still there (checked again right before deleting)."""


def _supported(name: str) -> bool:
    from ingestion.parse import file_type_of

    return file_type_of(Path(name)) is not None


class DirectorySource:
    """A local folder, searched recursively; hidden files and folders are skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.uri = str(self.root)

    def list_files(self) -> Listing:
        if not self.root.exists():
            raise SourceUnavailable(f"{self.root} does not exist (is it mounted?)")
        if not self.root.is_dir():
            raise SourceUnavailable(f"{self.root} is not a folder")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceUnavailable(f"{self.root} cannot be read (permission denied)")
        listing = Listing(files=[])

        def walk_error(exc: OSError) -> None:
            listing.complete = False
            listing.problems.append(f"cannot list {exc.filename}: {exc.strerror or exc}")

        for folder, dirs, names in os.walk(self.root, onerror=walk_error):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if not _supported(name):
                    listing.skipped.append(key)
                    continue
                try:
                    st = path.stat()
                except OSError as exc:
                    listing.complete = False
                    listing.problems.append(f"cannot stat {key}: {exc.strerror or exc}")
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                listing.files.append(
                    SourceFile(key, str(path), st.st_size, f"{st.st_size}:{st.st_mtime_ns}")
                )
        return listing

    def owns(self, source: str) -> bool:
        return source.startswith(self.uri.rstrip(os.sep) + os.sep)

    @contextlib.contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        yield Path(file.source)

    def exists(self, source: str) -> bool:
        return Path(source).exists()


class S3Source:
    """Objects under a bucket prefix of S3 or an S3-compatible store (MinIO, Ceph), through
    boto3. Credentials come from the standard AWS variables, profile or instance role."""

    def __init__(self, uri: str, *, endpoint_url: str | None = None, client: Any = None) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigurationError(f"{uri!r} names no bucket; write s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}"
        if client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigurationError(
                    f"syncing {uri} needs boto3: pip install 'docqa[s3]'"
                ) from None
            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    def list_files(self) -> Listing:
        from botocore.exceptions import BotoCoreError, ClientError

        listing = Listing(files=[])
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    rel = key[len(self.prefix) :].lstrip("/")
                    if key.endswith("/") or any(p.startswith(".") for p in rel.split("/")):
                        continue
                    if not _supported(key):
                        listing.skipped.append(rel)
                        continue
                    etag = str(obj.get("ETag", "")).strip('"')
                    listing.files.append(
                        SourceFile(
                            rel, f"s3://{self.bucket}/{key}", int(obj["Size"]), f"etag:{etag}"
                        )
                    )
        except (BotoCoreError, ClientError) as exc:
            # A listing cut short says nothing about which objects are gone.
            raise SourceUnavailable(f"cannot list {self.uri}: {exc}") from exc
        return listing

    def owns(self, source: str) -> bool:
        return source.startswith(f"s3://{self.bucket}/{self.prefix}")

    def _key(self, source: str) -> str:
        return source.removeprefix(f"s3://{self.bucket}/")

    @contextlib.contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        from botocore.exceptions import BotoCoreError, ClientError

        folder = Path(tempfile.mkdtemp(prefix="docqa-s3-"))
        try:
            # The object's own name, so the file type is read from its extension.
            path = folder / Path(file.key).name
            try:
                self.client.download_file(self.bucket, self._key(file.source), str(path))
            except (BotoCoreError, ClientError) as exc:
                raise OSError(f"cannot download {file.source}: {exc}") from exc
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def exists(self, source: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(source))
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def open_source(uri: str, settings: Settings) -> Source:
    """A folder path or an s3:// URI as a Source."""
    if uri.startswith("s3://"):
        return S3Source(uri, endpoint_url=settings.sync.s3_endpoint_url)
    if "://" in uri:
        raise ConfigurationError(f"cannot sync {uri!r}: a source is a folder or an s3:// URI")
    return DirectorySource(Path(uri))


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


def plan_sync(docqa: Docqa, source: Source, *, max_delete_share: float | None = None) -> SyncPlan:
    """List the source and diff it against the record store. Never raises for a source
    that cannot be listed: the plan carries the error and changes nothing."""
    from ingestion.pipeline import file_digest, index_fingerprint

    share = docqa.settings.sync.max_delete_share if max_delete_share is None else max_delete_share
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

    records = docqa.records
    state = SyncState(records)
    markers = state.markers()
    owned = {r.source: r for r in records.list() if source.owns(r.source)}
    plan.owned = len(owned)
    fingerprint = index_fingerprint(docqa.embedder.model_id, docqa.chunker.fingerprint)
    seen: set[str] = set()
    refreshed: dict[str, tuple[str, str]] = {}  # unchanged files with a new marker
    for f in listing.files:
        seen.add(f.source)
        document_id = document_id_for(f.source)
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
    plan.deletion_blocked = deletion_guard(plan, share)
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


def ingest_planned(docqa: Docqa, source: Source, files: list[PlannedFile]) -> list[IngestResult]:
    """Ingest new and changed files. A file that fails is recorded as failed and the rest
    go on; a failure of the index itself (Chroma down) raises, so a retry can resume."""
    from ingestion.pipeline import file_digest

    state = SyncState(docqa.records)
    indexer = docqa.indexer()
    results = []
    for planned in files:
        document_id = document_id_for(planned.source)
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


def prune_deleted(docqa: Docqa, source: Source, plan: SyncPlan) -> list[PlannedDeletion]:
    """Remove the documents whose files are gone.

    :raises DeletionAborted: the deletion guard blocked it; nothing was deleted.
    """
    if plan.deletion_blocked:
        raise DeletionAborted(
            f"deletion aborted, nothing deleted: {plan.deletion_blocked}", param="source"
        )
    if not plan.to_delete:
        return []
    state = SyncState(docqa.records)
    indexer = docqa.indexer()
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


def sync_source(
    docqa: Docqa, source: Source, *, max_delete_share: float | None = None
) -> SyncReport:
    """Plan, ingest and prune one source in this process (`docqa sync`)."""
    plan = plan_sync(docqa, source, max_delete_share=max_delete_share)
    results = ingest_planned(docqa, source, plan.to_ingest)
    deleted: list[PlannedDeletion] | None
    try:
        deleted = prune_deleted(docqa, source, plan)
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
            IngestResult(
                r["source"],
                r["document_id"],
                IngestOutcome(r["outcome"]),
                chunks=r.get("chunks", 0),
                error=r.get("error"),
                reason=r.get("reason"),
                warnings=list(r.get("warnings") or []),
            )
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
