"""Files in, chunks stored: parse -> chunk -> embed -> upsert, with the record store as
the journal that makes every step repeatable and every crash repairable.

Write order for one document (each step idempotent):
  1. parse, chunk and embed in memory (nothing written; a failure is only recorded);
  2. record the new chunk ids as pending;
  3. upsert the new chunks into the vector store and the BM25 index;
  4. make the new ids current, the old ones stale;
  5. delete the stale chunks and forget them.
A crash before 4 leaves pending ids: `repair` deletes them and the old version still
serves. A crash after 4 leaves stale ids: `repair` deletes them. Chunk ids derive from
the document id, the content hash and the chunking settings, so a retry rewrites the
same ids instead of adding copies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from docqa import metrics
from docqa.domain import (
    Chunk,
    DocumentStatus,
    IngestOutcome,
    IngestResult,
)
from docqa.errors import IngestError, NotFoundError
from docqa.settings import IngestionSettings
from ingestion.budget import ParseBudget
from ingestion.chunk import Chunker
from ingestion.embed import embed_chunks
from ingestion.isolation import InProcessParser
from ingestion.parse import Parser, file_type_of
from ingestion.records import RecordStore
from ingestion.uploads import remove_stored_upload
from retrieval.index import ServingIndex
from retrieval.protocols import Embedder


@dataclass
class PreparedDocument:
    document_id: str
    source: str
    file_type: str
    content_hash: str
    size_bytes: int
    chunks: list[Chunk]
    embeddings: np.ndarray
    warnings: list[str] = field(default_factory=list)
    # Chunk id -> one vector per sentence (retrieval/sentences.py); empty: none kept.
    sentence_vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RepairReport:
    rolled_back: int = 0
    finished: int = 0
    orphans_removed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.rolled_back or self.finished or self.orphans_removed)


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 of a file's bytes and its size, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def index_fingerprint(model_id: str, chunking: str) -> str:
    """What an indexed document's chunks were made with, as recorded on it: the embedding
    model and the chunking settings. A different fingerprint means re-index."""
    return f"{model_id}|{chunking}"


def source_for(path: Path) -> str:
    """The source of a local file: its absolute path, so ids are stable across runs."""
    return str(path.expanduser().resolve())


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and the files under folders named (recursively, hidden ones skipped),
    in a stable order."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                if child.is_file() and not any(p.startswith(".") for p in rel.parts):
                    yield child
        else:
            yield path


class Indexer:
    """Writes documents into one index (vector store + BM25) and the record store."""

    def __init__(
        self,
        *,
        records: RecordStore,
        index: ServingIndex,
        embedder: Embedder,
        chunker: Chunker,
        settings: IngestionSettings,
        parser: Parser | None = None,
        uploads_dir: Path | None = None,
    ) -> None:
        """:param parser: where files are parsed (the container hands in the worker
        process, ingestion/isolation.py); in this process within the budget otherwise.
        :param uploads_dir: where uploads are stored; a deleted document's stored original
        is removed when it lies there (never a file of a source folder)."""
        self.records = records
        self.index = index
        self.embedder = embedder
        self.chunker = chunker
        self.settings = settings
        self.parser = parser or InProcessParser(
            ParseBudget.of(settings), pdf_strategy=settings.pdf_strategy, parser=settings.parser
        )
        self.uploads_dir = uploads_dir

    @property
    def fingerprint(self) -> str:
        return index_fingerprint(self.embedder.model_id, self.chunker.fingerprint)

    def ingest_file(
        self,
        path: Path,
        *,
        source: str | None = None,
        stored_path: str | None = None,
        force: bool = False,
        recorded: bool = False,
    ) -> IngestResult:
        """Index one file unless its content is already indexed with these settings.

        Never raises for bad input: failures come back as a FAILED result and are recorded.

        :param recorded: the document must still have its record (a queued upload): when a
            delete removed it, nothing is done and the result's reason is `deleted`.
        """
        result = self._ingest_file(path, source, stored_path, force, recorded)
        metrics.observe_ingest(result.outcome.value, result.chunks, result.reason)
        return result

    def _ingest_file(
        self, path: Path, source: str | None, stored_path: str | None, force: bool, recorded: bool
    ) -> IngestResult:
        source = source or source_for(path)
        document_id = self.records.document_id(source)
        file_type = file_type_of(path) or path.suffix.lstrip(".").lower()
        existing = self.records.get(document_id)
        if recorded and existing is None:
            return _deleted_meanwhile(source, document_id)
        try:
            digest, size = self._check_size(path)
        except IngestError as exc:
            return self._fail(document_id, source, file_type, exc, recorded=existing is not None)
        if (
            not force
            and existing is not None
            and existing.status == DocumentStatus.INDEXED
            and existing.content_hash == digest
            and existing.index_fingerprint == self.fingerprint
            and not existing.pending_chunk_ids
        ):
            return IngestResult(
                source, document_id, IngestOutcome.UNCHANGED, chunks=existing.chunk_count
            )
        try:
            prepared = self.prepare(
                path,
                source=source,
                digest=digest,
                size=size,
                still_wanted=(
                    (lambda: self.records.get(document_id) is not None)
                    if existing is not None
                    else None
                ),
            )
        except IngestError as exc:
            if exc.reason == "deleted":
                return _deleted_meanwhile(source, document_id)
            return self._fail(
                document_id,
                source,
                file_type,
                exc,
                digest=digest,
                size=size,
                recorded=existing is not None,
            )
        # A document recorded when this began (a queued upload, an indexed file) and gone
        # by now was deleted meanwhile: the delete wins, nothing may bring it back.
        return self.commit(prepared, stored_path=stored_path, recorded=existing is not None)

    def _check_size(self, path: Path) -> tuple[str, int]:
        if not path.exists():
            raise IngestError(f"no such file: {path}", reason="not_found")
        if not path.is_file():
            raise IngestError(f"not a regular file: {path}", reason="unreadable")
        size = path.stat().st_size
        limit = self.settings.max_file_mb * 1024 * 1024
        if size > limit:
            raise IngestError(
                f"file is {size / 2**20:.1f} MiB, over the {self.settings.max_file_mb:g} MiB "
                "limit (DOCQA_INGESTION__MAX_FILE_MB)",
                reason="too_large",
            )
        try:
            return file_digest(path)
        except OSError as exc:
            raise IngestError(f"cannot read file: {exc}", reason="unreadable") from exc

    def prepare(
        self,
        path: Path,
        *,
        source: str,
        digest: str | None = None,
        size: int | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> PreparedDocument:
        """Parse, chunk and embed in memory; writes nothing.

        :param still_wanted: asked between parsing and embedding (the slow steps); False
            (the document was deleted meanwhile) stops here with reason `deleted`.
        :raises IngestError: the file cannot be indexed (reason says why).
        """
        if digest is None or size is None:
            digest, size = file_digest(path)
        document_id = self.records.document_id(source)
        parsed = self.parser.parse(path, source=source)
        if still_wanted is not None and not still_wanted():
            raise IngestError("the document was deleted while it was parsed", reason="deleted")
        chunks = self.chunker.chunk(parsed, document_id=document_id, version=digest)
        if not chunks:
            raise IngestError("no text left after chunking", reason="no_text")
        embeddings, sentence_vectors = embed_chunks(
            self.embedder, chunks, sentences=self.settings.sentence_vectors
        )
        return PreparedDocument(
            document_id=document_id,
            source=source,
            file_type=parsed.file_type,
            content_hash=digest,
            size_bytes=size,
            chunks=chunks,
            embeddings=embeddings,
            warnings=parsed.warnings,
            sentence_vectors=sentence_vectors,
        )

    def commit(
        self, doc: PreparedDocument, *, stored_path: str | None = None, recorded: bool = False
    ) -> IngestResult:
        """Write a prepared document, replacing its previous version (steps 2-5 above).

        :param recorded: the document had a record when its ingestion began; if a delete
            has removed it since, nothing is written and the result says it was deleted.
        """
        existing = self.records.get(doc.document_id)
        had_chunks = existing is not None and bool(existing.chunk_ids)
        started = self.records.begin_indexing(
            doc.document_id,
            source=doc.source,
            file_type=doc.file_type,
            pending_chunk_ids=[c.chunk_id for c in doc.chunks],
            stored_path=stored_path,
            must_exist=recorded,
        )
        if not started:
            return _deleted_meanwhile(doc.source, doc.document_id)
        self.index.upsert(doc.chunks, doc.embeddings, doc.sentence_vectors)
        record = self.records.commit_indexing(
            doc.document_id,
            content_hash=doc.content_hash,
            index_fingerprint=self.fingerprint,
            model=self.embedder.model_id,
            warnings=doc.warnings,
            size_bytes=doc.size_bytes,
        )
        if record is None:
            return self._roll_back(doc)
        self._drop_stale(doc.document_id, record.stale_chunk_ids)
        return IngestResult(
            doc.source,
            doc.document_id,
            IngestOutcome.UPDATED if had_chunks else IngestOutcome.ADDED,
            chunks=len(doc.chunks),
            warnings=doc.warnings,
        )

    def _roll_back(self, doc: PreparedDocument) -> IngestResult:
        """The record changed under this write. A delete ran meanwhile: it removed what it
        saw pending, but the upsert may have landed after it, so take the chunks out
        again. Another writer committed first: keep whatever its record names."""
        now = self.records.get(doc.document_id)
        keep = set(now.chunk_ids) | set(now.pending_chunk_ids) if now is not None else set()
        self.index.delete([c.chunk_id for c in doc.chunks if c.chunk_id not in keep])
        if now is None or now.status == DocumentStatus.DELETING:
            return _deleted_meanwhile(doc.source, doc.document_id)
        return IngestResult(
            doc.source,
            doc.document_id,
            IngestOutcome.FAILED,
            error="another ingestion of this document finished first; its version is indexed",
            reason="superseded",
        )

    def _drop_stale(self, document_id: str, stale: list[str]) -> None:
        self.index.delete(stale)
        self.records.clear_stale(document_id)

    def _fail(
        self,
        document_id: str,
        source: str,
        file_type: str,
        exc: IngestError,
        *,
        digest: str | None = None,
        size: int | None = None,
        recorded: bool = False,
    ) -> IngestResult:
        if exc.reason == "not_found":
            # A missing file is no document to record (a mistyped path); an upload whose
            # stored copy went with its deleted record was deleted.
            if recorded and self.records.get(document_id) is None:
                return _deleted_meanwhile(source, document_id)
        elif not self.records.mark_failed(
            document_id,
            source=source,
            file_type=file_type,
            error=exc.message,
            reason=exc.reason,
            content_hash=digest,
            size_bytes=size,
            must_exist=recorded,
        ):
            return _deleted_meanwhile(source, document_id)
        return IngestResult(
            source, document_id, IngestOutcome.FAILED, error=exc.message, reason=exc.reason
        )

    def ingest_paths(
        self,
        paths: Iterable[Path],
        *,
        force: bool = False,
        on_result: Callable[[IngestResult], None] | None = None,
    ) -> list[IngestResult]:
        # One file after another: writing one file on a thread while the next embeds was
        # measured no faster on 2 cores (the writes take the cores the embedding needs;
        # benchmarks/RESULTS.md, stop 19).
        results = []
        for path in paths:
            result = self.ingest_file(path, force=force)
            results.append(result)
            if on_result:
                on_result(result)
        return results

    def delete_document(self, document_id: str) -> int:
        """Remove a document and its chunks; returns how many chunks went.

        :raises NotFoundError: no such document.
        """
        record = self.records.get(document_id)
        if record is None:
            raise NotFoundError(f"no document with id {document_id!r}", param="document_id")
        # Journal first: if this process dies midway, repair finishes the deletion.
        doomed = self.records.begin_delete(document_id)
        self.index.delete(doomed)
        self.records.delete(document_id)
        self.remove_stored_original(record.stored_path)
        return len(record.chunk_ids)

    def remove_stored_original(self, stored_path: str | None) -> bool:
        """Delete an upload's stored copy (never a file outside the uploads folder)."""
        if self.uploads_dir is None:
            return False
        return remove_stored_upload(self.uploads_dir, stored_path)

    def repair(self, *, scan_orphans: bool = False) -> RepairReport:
        """Finish or undo what an interrupted process left half-written."""
        report = RepairReport()
        for record in self.records.interrupted():
            if record.status == DocumentStatus.DELETING:
                self.index.delete(record.stale_chunk_ids)
                self.records.delete(record.document_id)
                report.finished += 1
                continue
            if record.pending_chunk_ids:
                self.index.delete(record.pending_chunk_ids)
                report.rolled_back += 1
            if record.stale_chunk_ids:
                self._drop_stale(record.document_id, record.stale_chunk_ids)
                report.finished += 1
            self.records.restore_after_interruption(
                record.document_id,
                error="indexing was interrupted before it finished; ingest the file again",
            )
        if scan_orphans or report.changed:
            report.orphans_removed = remove_orphans(self.index, self.records)
        return report


def _deleted_meanwhile(source: str, document_id: str) -> IngestResult:
    return IngestResult(
        source,
        document_id,
        IngestOutcome.FAILED,
        error="the document was deleted while it waited or was being indexed; nothing of it "
        "was kept",
        reason="deleted",
    )


def remove_orphans(index: ServingIndex, records: RecordStore) -> int:
    """Delete the chunks of `index` that no record knows; returns how many went. Safe while
    others write: the ids are listed before the records are read, and a writer records
    chunk ids as pending before it writes them, so a chunk being written is never taken
    for an orphan."""
    vector_ids = index.vectors.ids()
    lexical_ids = index.lexical.ids()
    known = records.all_chunk_ids()
    orphans = {i for i in vector_ids if i not in known} | {i for i in lexical_ids if i not in known}
    index.delete(sorted(orphans))
    return len(orphans)
