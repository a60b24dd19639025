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
Queries keep being answered from the old collection until the switch (`Docqa.index()`
re-reads the alias on every call). Any failure before the switch drops the half-built
collection and leaves the serving one untouched. The old collection is dropped after a
grace period (`retire_old`), once requests still running against it have finished; a
final `reconcile` first moves over anything a writer still put there.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docqa.domain import Chunk, DocumentStatus
from docqa.errors import DocqaError, IngestError

if TYPE_CHECKING:
    from docqa.services import Docqa, ServingIndex
    from ingestion.pipeline import Indexer
    from ingestion.records import DocumentRecord

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


def rebuild(docqa: Docqa, *, on_progress: Progress | None = None) -> ReindexReport:
    """Build, verify and switch to a new collection (steps 1-4 above).

    :param on_progress: called with (done, total, source) after each document.
    :raises ReindexError: verification failed; the serving collection is unchanged.
    """
    from ingestion.pipeline import Indexer

    alias = docqa.settings.collection
    old_name = docqa.records.get_alias(alias)
    new_name = docqa.new_collection_name()
    report = ReindexReport(alias, old_name, new_name)
    new = docqa.open_index(new_name, create=True)
    try:
        old = _open_existing(docqa, old_name)
        builder = Indexer(
            records=docqa.records,
            vectors=new.vectors,
            lexical=new.lexical,
            embedder=docqa.embedder,
            chunker=docqa.chunker,
            settings=docqa.settings.ingestion,
        )
        built: dict[str, Rebuilt] = {}
        todo = _serving_records(docqa)
        for n, record in enumerate(todo.values(), start=1):
            built[record.document_id] = _rebuild_document(docqa, builder, new, old, record, report)
            if on_progress:
                on_progress(n, len(todo), record.source)
        report.caught_up = _catch_up(docqa, builder, new, old, built, report)
        _verify(docqa, new, built)
        report.smoke_passed, report.smoke_total = _smoke(docqa, new, built)
        if report.smoke_passed < report.smoke_total:
            raise ReindexError(
                f"only {report.smoke_passed} of {report.smoke_total} smoke queries found "
                f"their document in {new_name}; the serving collection is unchanged"
            )
        _, left_out = docqa.records.switch_collection(
            alias,
            new_name,
            {
                doc_id: (b.content_hash, b.chunk_ids, b.fingerprint, docqa.embedder.model_id)
                for doc_id, b in built.items()
            },
        )
    except BaseException:
        drop_collection(docqa, new_name)
        raise
    report.documents = len(built)
    report.reparsed = sum(b.how == "reparsed" for b in built.values())
    report.carried_over = sum(b.how == "carried" for b in built.values())
    report.chunks = sum(len(b.chunk_ids) for b in built.values())
    # A document re-ingested between the last catch-up and the switch kept its row; it
    # and anything written to the old collection since are moved over now.
    report.reconciled = reconcile(docqa, previous=old_name, also=left_out)
    return report


def _open_existing(docqa: Docqa, name: str | None) -> ServingIndex | None:
    if name is None:
        return None
    try:
        return docqa.open_index(name)
    except Exception:  # noqa: BLE001 - a missing collection only means nothing to carry over
        return None


def _serving_records(docqa: Docqa) -> dict[str, DocumentRecord]:
    """Documents with chunks in the serving index (a failed newer version keeps its old
    chunks serving, so status alone does not say)."""
    return {
        r.document_id: r
        for r in docqa.records.list()
        if r.chunk_ids and r.status != DocumentStatus.DELETING
    }


@contextlib.contextmanager
def original_of(docqa: Docqa, record: DocumentRecord) -> Iterator[Path | None]:
    """A readable copy of the document's original, or None when it is gone."""
    if record.stored_path and Path(record.stored_path).is_file():
        yield Path(record.stored_path)
        return
    if record.source.startswith("s3://"):
        from ingestion.sync import S3Source, SourceFile

        with contextlib.ExitStack() as stack:
            fetched: Path | None
            try:
                s3 = S3Source(record.source, endpoint_url=docqa.settings.sync.s3_endpoint_url)
                file = SourceFile(Path(record.source).name, record.source, 0, "")
                fetched = stack.enter_context(s3.fetch(file))
            except (OSError, DocqaError):
                fetched = None
            yield fetched
        return
    path = Path(record.source)
    yield path if path.is_absolute() and path.is_file() else None


def _rebuild_document(
    docqa: Docqa,
    builder: Indexer,
    new: ServingIndex,
    old: ServingIndex | None,
    record: DocumentRecord,
    report: ReindexReport,
) -> Rebuilt:
    from ingestion.pipeline import file_digest

    why = "its original is gone"
    with original_of(docqa, record) as path:
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
                    new.vectors.upsert(doc.chunks, doc.embeddings)
                    new.lexical.upsert(doc.chunks)
                    return Rebuilt(
                        record.content_hash,
                        [c.chunk_id for c in doc.chunks],
                        builder.fingerprint,
                        "reparsed",
                    )
    return _carry_over(docqa, new, old, record, report, why)


def _carry_over(
    docqa: Docqa,
    new: ServingIndex,
    old: ServingIndex | None,
    record: DocumentRecord,
    report: ReindexReport,
    why: str,
) -> Rebuilt:
    missing = _copy_chunks(docqa, old, new, record.chunk_ids)
    if missing:
        raise ReindexError(
            f"{record.source}: {why}, and {missing} of its "
            f"{len(record.chunk_ids)} chunks are missing from the serving collection, so it "
            "cannot be carried over. Ingest it again or delete it, then re-index."
        )
    from ingestion.pipeline import index_fingerprint

    # Honest fingerprint: the new model, the chunking these chunks were cut with.
    chunking = (record.index_fingerprint or "|").split("|", 1)[1]
    report.carried.append({"source": record.source, "why": why})
    return Rebuilt(
        record.content_hash,
        list(record.chunk_ids),
        index_fingerprint(docqa.embedder.model_id, chunking),
        "carried",
    )


def _copy_chunks(
    docqa: Docqa, source: ServingIndex | None, target: ServingIndex, chunk_ids: list[str]
) -> int:
    """Re-embed a document's chunks from `source` into `target`. Copies nothing when any
    is missing; returns how many are."""
    chunks: list[Chunk] = source.vectors.get(chunk_ids) if source else []
    if len(chunks) != len(chunk_ids):
        return len(chunk_ids) - len(chunks)
    embeddings = docqa.embedder.embed_documents([c.text for c in chunks])
    target.vectors.upsert(chunks, embeddings)
    target.lexical.upsert(chunks)
    return 0


def _catch_up(
    docqa: Docqa,
    builder: Indexer,
    new: ServingIndex,
    old: ServingIndex | None,
    built: dict[str, Rebuilt],
    report: ReindexReport,
) -> int:
    """Apply what writers changed while the rebuild ran; returns how many documents."""
    changed = 0
    for _ in range(CATCH_UP_ROUNDS):
        now = _serving_records(docqa)
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
            stale = built.pop(d).chunk_ids
            new.vectors.delete(stale)
            new.lexical.delete(stale)
        for record in fresh:
            previous = built.pop(record.document_id, None)
            if previous is not None:
                new.vectors.delete(previous.chunk_ids)
                new.lexical.delete(previous.chunk_ids)
            built[record.document_id] = _rebuild_document(docqa, builder, new, old, record, report)
        changed += len(gone) + len(fresh)
    raise ReindexError(
        f"documents kept changing during the rebuild ({changed} in {CATCH_UP_ROUNDS} rounds); "
        "try again when ingestion is quieter"
    )


def _verify(docqa: Docqa, new: ServingIndex, built: dict[str, Rebuilt]) -> None:
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


def _smoke(docqa: Docqa, new: ServingIndex, built: dict[str, Rebuilt]) -> tuple[int, int]:
    """Search the new collection with the opening words of a few documents; each search
    must find its document's passage. Returns (passed, run)."""
    from retrieval.hybrid import HybridRetriever

    wanted = docqa.settings.reindex.smoke_queries
    ids = sorted(built)
    if not wanted or not ids:
        return 0, 0
    step = max(1, len(ids) // wanted)
    picked = ids[::step][:wanted]
    retriever = HybridRetriever(docqa.embedder, new.vectors, new.lexical, docqa.settings.retrieval)
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


def reconcile(docqa: Docqa, *, previous: str | None = None, also: list[str] | None = None) -> int:
    """Make the serving collection hold exactly what the record store says: re-ingest
    documents whose chunks are missing (written to the old collection by a writer that had
    not seen the switch), and delete chunks no record knows. Safe while others write: a
    writer records chunk ids as pending before it writes them. Returns documents fixed."""
    serving = docqa.index()
    old = _open_existing(docqa, previous) if previous and previous != serving.collection else None
    present = set(serving.vectors.ids())
    recheck = set(also or [])
    indexer = docqa.indexer()
    fixed = 0
    for record in _serving_records(docqa).values():
        if record.document_id not in recheck and all(c in present for c in record.chunk_ids):
            continue
        with original_of(docqa, record) as path:
            if path is not None:
                result = indexer.ingest_file(
                    path, source=record.source, stored_path=record.stored_path, force=True
                )
                if result.outcome.value != "failed":
                    fixed += 1
                    continue
        if old is not None and not _copy_chunks(docqa, old, serving, record.chunk_ids):
            fixed += 1
    # Listed before the record store is read: a chunk being written now is recorded as
    # pending first, so it is never taken for an orphan.
    vector_ids = serving.vectors.ids()
    lexical_ids = serving.lexical.ids()
    known = docqa.records.all_chunk_ids()
    serving.vectors.delete([c for c in vector_ids if c not in known])
    serving.lexical.delete([c for c in lexical_ids if c not in known])
    return fixed


# -- retiring old collections ------------------------------------------------------------


def _stamp(alias: str, name: str) -> datetime | None:
    match = re.fullmatch(re.escape(alias) + r"-(\d{20})", name)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)


def retired_collections(docqa: Docqa, *, grace_s: float, now: datetime | None = None) -> list[str]:
    """Collections of this alias that may be dropped: the previous one once the grace
    period since the switch is over, older generations, and leftovers of crashed rebuilds.
    A collection newer than the serving one may be a rebuild in progress elsewhere: it is
    only taken for a leftover after a day."""
    alias = docqa.settings.collection
    now = now or datetime.now(UTC)
    state = docqa.records.alias_state(alias) or {}
    current, previous = state.get("collection"), state.get("previous")
    switched_at = state.get("switched_at")
    current_stamp = _stamp(alias, current or "")
    out = []
    for name in sorted(c.name for c in docqa.chroma.list_collections()):
        stamp = _stamp(alias, name)
        if stamp is None or name == current:
            continue
        if name == previous:
            if switched_at is None or now - switched_at >= timedelta(seconds=grace_s):
                out.append(name)
        elif current_stamp is not None and stamp < current_stamp:
            out.append(name)
        elif now - stamp >= max(LEFTOVER_AGE, timedelta(seconds=grace_s)):
            out.append(name)
    return out


def grace_remaining(docqa: Docqa, *, grace_s: float, now: datetime | None = None) -> float:
    """Seconds until the previous collection may be dropped (0 when it may be now)."""
    state = docqa.records.alias_state(docqa.settings.collection) or {}
    switched_at = state.get("switched_at")
    if not state.get("previous") or switched_at is None:
        return 0.0
    left = switched_at + timedelta(seconds=grace_s) - (now or datetime.now(UTC))
    return max(0.0, left.total_seconds())


def retire_old(docqa: Docqa, *, grace_s: float, now: datetime | None = None) -> list[str]:
    """Drop the collections `retired_collections` names, after a last reconcile."""
    doomed = retired_collections(docqa, grace_s=grace_s, now=now)
    if not doomed:
        return []
    state = docqa.records.alias_state(docqa.settings.collection) or {}
    previous = state.get("previous")
    reconcile(docqa, previous=previous if previous in doomed else None)
    for name in doomed:
        drop_collection(docqa, name)
    return doomed


def drop_collection(docqa: Docqa, name: str) -> None:
    """Delete a collection and its keyword index; a missing one is not an error."""
    from retrieval.lexical import BM25Index

    if name == docqa.records.get_alias(docqa.settings.collection):
        raise ReindexError(f"refusing to drop {name}: it is the serving collection")
    with contextlib.suppress(Exception):
        docqa.chroma.delete_collection(name)
    BM25Index(docqa.settings.resolved_database_url, name, docqa.settings.data_dir / "bm25").drop()
