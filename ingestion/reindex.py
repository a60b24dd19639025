"""Rebuild the whole index into a new collection and switch to it without downtime.

Used after changing the embedding model or the chunking settings (`docqa reindex`, the
docqa_reindex DAG). The steps:
  1. build a new Chroma collection (and its BM25 twin) from every indexed document, re-read
     from its original: an upload's stored copy, a file on disk, an S3 object. A document
     whose original is gone, changed since it was indexed, or no longer parses keeps its
     current chunks, re-embedded (it is "carried over"; the next sync refreshes it);
  2. catch up with documents ingested or deleted while the rebuild ran;
  3. verify: the new collection holds exactly the chunks recorded for it, in both stores,
     and smoke queries taken from the documents find them;
  4. switch the serving alias and every document's chunk ids in one transaction.
Queries keep being answered from the old collection until the switch
(`IndexCatalog.current()` re-reads the alias on every call). Any failure before the switch
drops the half-built collection and leaves the serving one untouched. The old collection is
dropped after a grace period (`retire_old`), once requests still running against it have
finished; a final `reconcile` first moves over anything a writer still put there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from docqa.domain import Chunk, DocumentStatus, IngestOutcome
from docqa.errors import DocqaError, IngestError
from docqa.settings import Settings
from ingestion.chunk import Chunker
from ingestion.embed import embed_chunks
from ingestion.parse import Parser
from ingestion.pipeline import Indexer, file_digest, index_fingerprint, remove_orphans
from ingestion.records import DocumentRecord, RecordStore
from ingestion.sources import S3Source, SourceFile
from retrieval.hybrid import HybridRetriever
from retrieval.index import IndexCatalog, ServingIndex
from retrieval.protocols import Embedder

# A collection of this alias that neither serves nor was just retired, and is older than
# this, is left over from a rebuild that crashed.
LEFTOVER_AGE = timedelta(hours=24)
CATCH_UP_ROUNDS = 3


class ReindexError(DocqaError):
    """The rebuild failed; the serving collection was left as it was."""

    status_code = 500
    error_type = "reindex_failed"


@dataclass
class Rebuilt:
    content_hash: str | None
    chunk_ids: list[str]
    fingerprint: str
    how: str  # "reparsed" or "carried"


@dataclass
class ReindexReport:
    alias: str
    old_collection: str | None
    new_collection: str
    documents: int = 0
    reparsed: int = 0
    carried_over: int = 0
    chunks: int = 0
    caught_up: int = 0
    smoke_passed: int = 0
    smoke_total: int = 0
    reconciled: int = 0
    carried: list[dict[str, str]] = field(default_factory=list)  # source, why
    retired: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"rebuilt {self.documents} documents into {self.new_collection}: "
            f"{self.reparsed} re-parsed, {self.carried_over} carried over, "
            f"{self.chunks} chunks",
            f"smoke queries: {self.smoke_passed}/{self.smoke_total} found their document",
            f"alias {self.alias!r} now serves {self.new_collection} "
            f"(was {self.old_collection or 'nothing'})",
        ]
        if self.caught_up or self.reconciled:
            lines.append(
                f"caught up with {self.caught_up} documents changed during the rebuild, "
                f"{self.reconciled} after the switch"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[int, int, str], None]


class Reindexer:
    """Rebuilds, reconciles and retires the collections of the serving index."""

    def __init__(
        self,
        *,
        indexes: IndexCatalog,
        records: RecordStore,
        embedder: Embedder,
        chunker: Chunker,
        settings: Settings,
        parser: Parser | None = None,
    ) -> None:
        self.indexes = indexes
        self.records = records
        self.embedder = embedder
        self.chunker = chunker
        self.settings = settings
        self.parser = parser

    def _indexer(self, index: ServingIndex) -> Indexer:
        return Indexer(
            records=self.records,
            index=index,
            embedder=self.embedder,
            chunker=self.chunker,
            settings=self.settings.ingestion,
            parser=self.parser,
        )

    # -- rebuild ---------------------------------------------------------------------

    def rebuild(self, *, on_progress: Progress | None = None) -> ReindexReport:
        """Build, verify and switch to a new collection (steps 1-4 above).

        :param on_progress: called with (done, total, source) after each document.
        :raises ReindexError: verification failed; the serving collection is unchanged.
        """
        old_name = self.indexes.serving_name()
        new_name = self.indexes.new_name()
        report = ReindexReport(self.indexes.alias, old_name, new_name)
        new = self.indexes.open(new_name, create=True)
        try:
            old = self.indexes.open_existing(old_name)
            builder = self._indexer(new)
            built: dict[str, Rebuilt] = {}
            todo = self._serving_records()
            for n, record in enumerate(todo.values(), start=1):
                built[record.document_id] = self._rebuild_document(
                    builder, new, old, record, report
                )
                if on_progress:
                    on_progress(n, len(todo), record.source)
            report.caught_up = self._catch_up(builder, new, old, built, report)
            _verify(new, built)
            report.smoke_passed, report.smoke_total = self._smoke(new, built)
            if report.smoke_passed < report.smoke_total:
                raise ReindexError(
                    f"only {report.smoke_passed} of {report.smoke_total} smoke queries found "
                    f"their document in {new_name}; the serving collection is unchanged"
                )
            updates = {
                doc_id: (b.content_hash, b.chunk_ids, b.fingerprint, self.embedder.model_id)
                for doc_id, b in built.items()
            }
            _, left_out = self.indexes.switch(
                new_name, lambda conn: self.records.rebind_chunks(conn, updates)
            )
        except BaseException:
            self.drop(new_name)
            raise
        report.documents = len(built)
        report.reparsed = sum(b.how == "reparsed" for b in built.values())
        report.carried_over = sum(b.how == "carried" for b in built.values())
        report.chunks = sum(len(b.chunk_ids) for b in built.values())
        # A document re-ingested between the last catch-up and the switch kept its row; it
        # and anything written to the old collection since are moved over now.
        report.reconciled = self.reconcile(previous=old_name, also=left_out)
        return report

    def _serving_records(self) -> dict[str, DocumentRecord]:
        """Documents with chunks in the serving index (a failed newer version keeps its old
        chunks serving, so status alone does not say)."""
        return {
            r.document_id: r
            for r in self.records.list()
            if r.chunk_ids and r.status != DocumentStatus.DELETING
        }

    @contextlib.contextmanager
    def original_of(self, record: DocumentRecord) -> Iterator[Path | None]:
        """A readable copy of the document's original, or None when it is gone."""
        if record.stored_path and Path(record.stored_path).is_file():
            yield Path(record.stored_path)
            return
        if record.source.startswith("s3://"):
            with contextlib.ExitStack() as stack:
                fetched: Path | None
                try:
                    s3 = S3Source(record.source, endpoint_url=self.settings.sync.s3_endpoint_url)
                    file = SourceFile(Path(record.source).name, record.source, 0, "")
                    fetched = stack.enter_context(s3.fetch(file))
                except (OSError, DocqaError):
                    fetched = None
                yield fetched
            return
        path = Path(record.source)
        yield path if path.is_absolute() and path.is_file() else None

    def _rebuild_document(
        self,
        builder: Indexer,
        new: ServingIndex,
        old: ServingIndex | None,
        record: DocumentRecord,
        report: ReindexReport,
    ) -> Rebuilt:
        why = "its original is gone"
        with self.original_of(record) as path:
            if path is not None:
                try:
                    digest, size = file_digest(path)
                except OSError as exc:
                    digest, size, why = None, 0, f"its original cannot be read: {exc}"
                if digest is not None and digest != record.content_hash:
                    why = "its original changed since it was indexed"
                elif digest is not None:
                    try:
                        doc = builder.prepare(path, source=record.source, digest=digest, size=size)
                    except IngestError as exc:
                        why = f"it no longer parses: {exc.message}"
                    else:
                        new.upsert(doc.chunks, doc.embeddings, doc.sentence_vectors)
                        return Rebuilt(
                            record.content_hash,
                            [c.chunk_id for c in doc.chunks],
                            builder.fingerprint,
                            "reparsed",
                        )
        return self._carry_over(new, old, record, report, why)

    def _carry_over(
        self,
        new: ServingIndex,
        old: ServingIndex | None,
        record: DocumentRecord,
        report: ReindexReport,
        why: str,
    ) -> Rebuilt:
        missing = self._copy_chunks(old, new, record.chunk_ids)
        if missing:
            raise ReindexError(
                f"{record.source}: {why}, and {missing} of its "
                f"{len(record.chunk_ids)} chunks are missing from the serving collection, so "
                "it cannot be carried over. Ingest it again or delete it, then re-index."
            )
        # Honest fingerprint: the new model, the chunking these chunks were cut with.
        chunking = (record.index_fingerprint or "|").split("|", 1)[1]
        report.carried.append({"source": record.source, "why": why})
        return Rebuilt(
            record.content_hash,
            list(record.chunk_ids),
            index_fingerprint(self.embedder.model_id, chunking),
            "carried",
        )

    def _copy_chunks(
        self, source: ServingIndex | None, target: ServingIndex, chunk_ids: list[str]
    ) -> int:
        """Re-embed a document's chunks from `source` into `target`. Copies nothing when any
        is missing; returns how many are."""
        chunks: list[Chunk] = source.vectors.get(chunk_ids) if source else []
        if len(chunks) != len(chunk_ids):
            return len(chunk_ids) - len(chunks)
        target.upsert(
            chunks,
            *embed_chunks(
                self.embedder, chunks, sentences=self.settings.ingestion.sentence_vectors
            ),
        )
        return 0

    def _catch_up(
        self,
        builder: Indexer,
        new: ServingIndex,
        old: ServingIndex | None,
        built: dict[str, Rebuilt],
        report: ReindexReport,
    ) -> int:
        """Apply what writers changed while the rebuild ran; returns how many documents."""
        changed = 0
        for _ in range(CATCH_UP_ROUNDS):
            now = self._serving_records()
            gone = [d for d in built if d not in now]
            fresh = [
                r
                for d, r in now.items()
                if d not in built
                or built[d].content_hash != r.content_hash
                or (built[d].how == "carried" and built[d].chunk_ids != r.chunk_ids)
            ]
            if not gone and not fresh:
                return changed
            for d in gone:
                new.delete(built.pop(d).chunk_ids)
            for record in fresh:
                previous = built.pop(record.document_id, None)
                if previous is not None:
                    new.delete(previous.chunk_ids)
                built[record.document_id] = self._rebuild_document(
                    builder, new, old, record, report
                )
            changed += len(gone) + len(fresh)
        raise ReindexError(
            f"documents kept changing during the rebuild ({changed} in {CATCH_UP_ROUNDS} "
            "rounds); try again when ingestion is quieter"
        )

    def _smoke(self, new: ServingIndex, built: dict[str, Rebuilt]) -> tuple[int, int]:
        """Search the new collection with the opening words of a few documents; each search
        must find its document's passage. Returns (passed, run)."""
        wanted = self.settings.reindex.smoke_queries
        ids = sorted(built)
        if not wanted or not ids:
            return 0, 0
        step = max(1, len(ids) // wanted)
        picked = ids[::step][:wanted]
        retriever = HybridRetriever(
            self.embedder,
            new.vectors,
            new.lexical,
            self.settings.retrieval,
            sentences=new.sentences,
        )
        passed = run = 0
        for document_id in picked:
            chunks = new.vectors.get(built[document_id].chunk_ids[:1])
            if not chunks:
                continue
            words = chunks[0].text.split()[:24]
            if not words:
                continue
            query = " ".join(words)
            run += 1
            hits = retriever.retrieve(query, 10).hits
            # Identical passages of two documents are deduplicated, so a hit with the same
            # text counts as finding it.
            if any(
                h.chunk.document_id == document_id or query in " ".join(h.chunk.text.split())
                for h in hits
            ):
                passed += 1
        return passed, run

    # -- reconcile -------------------------------------------------------------------

    def reconcile(self, *, previous: str | None = None, also: list[str] | None = None) -> int:
        """Make the serving collection hold exactly what the record store says: re-ingest
        documents whose chunks are missing (written to the old collection by a writer that
        had not seen the switch), and delete chunks no record knows. Safe while others
        write. Returns documents fixed."""
        serving = self.indexes.current()
        old = (
            self.indexes.open_existing(previous)
            if previous and previous != serving.collection
            else None
        )
        present = set(serving.vectors.ids())
        recheck = set(also or [])
        indexer = self._indexer(serving)
        fixed = 0
        for record in self._serving_records().values():
            if record.document_id not in recheck and all(c in present for c in record.chunk_ids):
                continue
            with self.original_of(record) as path:
                if path is not None:
                    result = indexer.ingest_file(
                        path, source=record.source, stored_path=record.stored_path, force=True
                    )
                    if result.outcome != IngestOutcome.FAILED:
                        fixed += 1
                        continue
            if old is not None and not self._copy_chunks(old, serving, record.chunk_ids):
                fixed += 1
        remove_orphans(serving, self.records)
        return fixed

    # -- retiring old collections ----------------------------------------------------

    def retired_collections(self, *, grace_s: float, now: datetime | None = None) -> list[str]:
        """Collections of this alias that may be dropped: the previous one once the grace
        period since the switch is over, older generations, and leftovers of crashed
        rebuilds. A collection newer than the serving one may be a rebuild in progress
        elsewhere: it is only taken for a leftover after a day."""
        now = now or datetime.now(UTC)
        state = self.indexes.state()
        current = state.collection if state else None
        previous = state.previous if state else None
        current_stamp = self.indexes.created_at(current or "")
        out = []
        for name in self.indexes.collections():
            stamp = self.indexes.created_at(name)
            if stamp is None or name == current:
                continue
            if name == previous:
                assert state is not None
                if now - state.switched_at >= timedelta(seconds=grace_s):
                    out.append(name)
            elif current_stamp is not None and stamp < current_stamp:
                out.append(name)
            elif now - stamp >= max(LEFTOVER_AGE, timedelta(seconds=grace_s)):
                out.append(name)
        return out

    def grace_remaining(self, *, grace_s: float, now: datetime | None = None) -> float:
        """Seconds until the previous collection may be dropped (0 when it may be now)."""
        state = self.indexes.state()
        if state is None or not state.previous:
            return 0.0
        left = state.switched_at + timedelta(seconds=grace_s) - (now or datetime.now(UTC))
        return max(0.0, left.total_seconds())

    def retire_old(self, *, grace_s: float, now: datetime | None = None) -> list[str]:
        """Drop the collections `retired_collections` names, after a last reconcile."""
        doomed = self.retired_collections(grace_s=grace_s, now=now)
        if not doomed:
            return []
        state = self.indexes.state()
        previous = state.previous if state else None
        self.reconcile(previous=previous if previous in doomed else None)
        for name in doomed:
            self.drop(name)
        return doomed

    def drop(self, name: str) -> None:
        """Delete a collection and its keyword index; a missing one is not an error.

        :raises ReindexError: it is the serving collection.
        """
        if name == self.indexes.serving_name():
            raise ReindexError(f"refusing to drop {name}: it is the serving collection")
        self.indexes.drop(name)


def _verify(new: ServingIndex, built: dict[str, Rebuilt]) -> None:
    """Both stores hold exactly the chunks built. (That the documents built are the ones
    the record store serves, with the same content hashes, is what `_catch_up` returned
    on.)"""
    expected = {c for b in built.values() for c in b.chunk_ids}
    vectors = set(new.vectors.ids())
    lexical = set(new.lexical.ids())
    problems = []
    if vectors != expected:
        problems.append(
            f"the vector store holds {len(vectors)} chunks, {len(expected)} expected "
            f"({len(expected - vectors)} missing, {len(vectors - expected)} extra)"
        )
    if lexical != expected:
        problems.append(f"the keyword index holds {len(lexical)} chunks, {len(expected)} expected")
    if problems:
        raise ReindexError(
            "the rebuilt collection does not match the record store: " + "; ".join(problems)
        )
