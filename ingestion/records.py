"""The record store: what is indexed, from where, in which version, and what went wrong.

One row per document. Jobs (ingestion/jobs.py) and the serving index's alias
(retrieval/aliases.py) keep their own tables in the same database.

Writes follow a two-step protocol so a crash at any point leaves a state `repair` can
finish or undo (see ingestion/pipeline.py):
  1. `begin_indexing` records the new chunk ids as pending before any chunk is written;
  2. `commit_indexing` makes them current and records the previous ids as stale;
  3. `clear_stale` forgets the stale ids once they are deleted from the indexes.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
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
from docqa.domain import DEFAULT_COLLECTION, DocumentStatus, document_id_for

metadata = MetaData()

documents = Table(
    "docqa_documents",
    metadata,
    Column("document_id", String(64), primary_key=True),
    # The tenant a document belongs to; every query of a RecordStore is limited to its own.
    Column("collection", String(64), nullable=False, server_default=DEFAULT_COLLECTION, index=True),
    Column("source", Text, nullable=False, index=True),
    Column("file_type", String(16), nullable=False, default=""),
    Column("content_hash", String(64)),
    Column("index_fingerprint", Text),
    Column("model", String(512)),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("reason", String(64)),
    Column("warnings", JSON, nullable=False, default=list),
    Column("chunk_ids", JSON, nullable=False, default=list),
    Column("pending_chunk_ids", JSON, nullable=False, default=list),
    Column("stale_chunk_ids", JSON, nullable=False, default=list),
    Column("size_bytes", Integer),
    Column("stored_path", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("indexed_at", DateTime(timezone=True)),
)


@dataclass
class DocumentRecord:
    document_id: str
    source: str
    file_type: str
    status: DocumentStatus
    content_hash: str | None = None
    index_fingerprint: str | None = None
    model: str | None = None
    error: str | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    chunk_ids: list[str] = field(default_factory=list)
    pending_chunk_ids: list[str] = field(default_factory=list)
    stale_chunk_ids: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    stored_path: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    indexed_at: datetime | None = None
    collection: str = DEFAULT_COLLECTION

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def from_row(cls, row: Any) -> DocumentRecord:
        data = dict(row._mapping)
        data["status"] = DocumentStatus(data["status"])
        for key in ("warnings", "chunk_ids", "pending_chunk_ids", "stale_chunk_ids"):
            data[key] = list(data.get(key) or [])
        for key in ("created_at", "updated_at", "indexed_at"):
            data[key] = as_utc(data.get(key))
        return cls(**data)


class RecordStore:
    """SQL-backed record of the documents of one collection: one row each, with the
    journal of its chunk ids. Documents of other collections are invisible to it."""

    def __init__(self, url: str, collection: str = DEFAULT_COLLECTION) -> None:
        self.url = url
        self.collection = collection
        self.engine: Engine = get_engine(url)
        create_tables(self.engine, metadata)
        self._mine = documents.c.collection == collection

    def document_id(self, source: str) -> str:
        """The id a document read from `source` has in this collection."""
        return document_id_for(source, self.collection)

    def collections(self) -> builtins.list[str]:
        """Every collection that holds documents (this store's one first)."""
        with self.engine.connect() as conn:
            names = conn.execute(select(documents.c.collection).distinct()).scalars().all()
        return [self.collection, *sorted(set(names) - {self.collection})]

    # -- documents -------------------------------------------------------------------

    def get(self, document_id: str) -> DocumentRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(documents).where(documents.c.document_id == document_id, self._mine)
            ).first()
        return DocumentRecord.from_row(row) if row else None

    def list(
        self, *, limit: int | None = None, offset: int = 0, status: str | None = None
    ) -> builtins.list[DocumentRecord]:
        query = select(documents).where(self._mine).order_by(documents.c.source).offset(offset)
        if status:
            query = query.where(documents.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [DocumentRecord.from_row(r) for r in conn.execute(query)]

    def count(self, *, status: str | None = None) -> int:
        query = select(func.count()).select_from(documents).where(self._mine)
        if status:
            query = query.where(documents.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def sources(self) -> dict[str, DocumentRecord]:
        return {r.source: r for r in self.list()}

    def mark_queued(
        self, document_id: str, *, source: str, file_type: str, stored_path: str | None = None
    ) -> None:
        """Record an accepted upload before it is parsed; an indexed version stays searchable."""
        existing = self.get(document_id)
        if existing is None:
            self._insert(
                document_id,
                source=source,
                file_type=file_type,
                status=DocumentStatus.QUEUED,
                stored_path=stored_path,
            )
        elif existing.status != DocumentStatus.INDEXED:
            self._update(
                document_id,
                status=DocumentStatus.QUEUED,
                stored_path=stored_path,
                error=None,
                reason=None,
            )
        elif stored_path:
            self._update(document_id, stored_path=stored_path)

    def begin_indexing(
        self,
        document_id: str,
        *,
        source: str,
        file_type: str,
        pending_chunk_ids: Sequence[str],
        stored_path: str | None = None,
        must_exist: bool = False,
    ) -> bool:
        """Record the new chunk ids as pending. Returns False, writing nothing, when
        `must_exist` and the record is gone or being deleted (a delete won the race)."""
        if must_exist:
            return self._update_unless_deleted(
                document_id,
                source=source,
                file_type=file_type,
                status=DocumentStatus.INDEXING,
                pending_chunk_ids=list(pending_chunk_ids),
                **({"stored_path": stored_path} if stored_path else {}),
            )
        if self.get(document_id) is None:
            self._insert(
                document_id,
                source=source,
                file_type=file_type,
                status=DocumentStatus.INDEXING,
                pending_chunk_ids=list(pending_chunk_ids),
                stored_path=stored_path,
            )
        else:
            self._update(
                document_id,
                source=source,
                file_type=file_type,
                status=DocumentStatus.INDEXING,
                pending_chunk_ids=list(pending_chunk_ids),
                **({"stored_path": stored_path} if stored_path else {}),
            )
        return True

    def commit_indexing(
        self,
        document_id: str,
        *,
        content_hash: str,
        index_fingerprint: str,
        model: str,
        warnings: Sequence[str],
        size_bytes: int,
    ) -> DocumentRecord | None:
        """Make the pending chunks current; the ids they replace become stale.

        Returns None, changing nothing, when the document was deleted (or is being
        deleted) since `begin_indexing`: its pending chunks are the caller's to remove.
        """
        record = self.get(document_id)
        if record is None or record.status != DocumentStatus.INDEXING:
            return None
        new_ids = record.pending_chunk_ids
        keep = set(new_ids)
        stale = [c for c in record.chunk_ids if c not in keep] + record.stale_chunk_ids
        now = utcnow()
        committed = self._update_if(
            document_id,
            documents.c.status == DocumentStatus.INDEXING,
            status=DocumentStatus.INDEXED,
            chunk_ids=new_ids,
            pending_chunk_ids=[],
            stale_chunk_ids=stale,
            content_hash=content_hash,
            index_fingerprint=index_fingerprint,
            model=model,
            warnings=list(warnings),
            error=None,
            reason=None,
            size_bytes=size_bytes,
            indexed_at=now,
        )
        return self.get(document_id) if committed else None

    def clear_stale(self, document_id: str) -> None:
        # A deletion journals its doomed ids as stale: those are not this caller's to forget.
        self._update_unless_deleted(document_id, stale_chunk_ids=[])

    def mark_failed(
        self,
        document_id: str,
        *,
        source: str,
        file_type: str,
        error: str,
        reason: str,
        content_hash: str | None = None,
        size_bytes: int | None = None,
        must_exist: bool = False,
    ) -> bool:
        """Record a failure. A version indexed earlier keeps its chunks (nothing is lost),
        and the record says the latest content failed. Returns False, writing nothing,
        when `must_exist` and the record is gone or being deleted."""
        fields: dict[str, Any] = {
            "status": DocumentStatus.FAILED,
            "error": error,
            "reason": reason,
            "pending_chunk_ids": [],
        }
        if must_exist:
            return self._update_unless_deleted(document_id, **fields)
        existing = self.get(document_id)
        if existing is None:
            self._insert(
                document_id,
                source=source,
                file_type=file_type,
                failed_hash=content_hash,
                size_bytes=size_bytes,
                **fields,
            )
        else:
            self._update(document_id, **fields)
        return True

    def stored_paths(self) -> set[str]:
        """Every stored upload path a record of any collection names (one column read, not
        the rows): the uploads folder is shared, and a file any collection needs stays."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(documents.c.stored_path).where(documents.c.stored_path.is_not(None))
            )
            return {str(r[0]) for r in rows}

    def put_back(self, document_id: str, record: DocumentRecord | None) -> None:
        """Restore a row as it was read (None: there was none), undoing a rejected upload."""
        if record is None:
            self.delete(document_id)
            return
        fields = dataclasses.asdict(record)
        fields.pop("document_id")
        with self.engine.begin() as conn:
            conn.execute(
                update(documents)
                .where(documents.c.document_id == document_id, self._mine)
                .values(**fields)
            )

    def forget_stored_path(self, document_id: str, stored_path: str) -> None:
        """The stored copy `stored_path` was removed (unless another was stored since)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(documents)
                .where(
                    documents.c.document_id == document_id,
                    documents.c.stored_path == stored_path,
                    self._mine,
                )
                .values(stored_path=None, updated_at=utcnow())
            )

    def restore_after_interruption(self, document_id: str, *, error: str) -> None:
        record = self.get(document_id)
        if record is None:
            return
        status = DocumentStatus.INDEXED if record.chunk_ids else DocumentStatus.FAILED
        self._update(
            document_id,
            status=status,
            pending_chunk_ids=[],
            error=None if record.chunk_ids else error,
            reason=None if record.chunk_ids else "interrupted",
        )

    def interrupted(self) -> builtins.list[DocumentRecord]:
        """Records a crash left mid-write: pending or stale chunk ids remain."""
        return [
            r
            for r in self.list()
            if r.status == DocumentStatus.INDEXING or r.pending_chunk_ids or r.stale_chunk_ids
        ]

    def begin_delete(self, document_id: str) -> builtins.list[str]:
        """Journal a deletion: every chunk id of the document becomes stale. Returns them."""
        record = self.get(document_id)
        if record is None:
            return []
        doomed = [*record.chunk_ids, *record.pending_chunk_ids, *record.stale_chunk_ids]
        self._update(
            document_id,
            status=DocumentStatus.DELETING,
            chunk_ids=[],
            pending_chunk_ids=[],
            stale_chunk_ids=doomed,
        )
        return doomed

    def delete(self, document_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(documents).where(documents.c.document_id == document_id, self._mine)
            )

    def all_chunk_ids(self) -> set[str]:
        ids: set[str] = set()
        for r in self.list():
            ids.update(r.chunk_ids)
            ids.update(r.pending_chunk_ids)
            ids.update(r.stale_chunk_ids)
        return ids

    def rebind_chunks(
        self, conn: Connection, updates: dict[str, tuple[str | None, builtins.list[str], str, str]]
    ) -> builtins.list[str]:
        """Give each document its chunk ids in a rebuilt collection, inside the caller's
        transaction (the one that switches the alias). `updates` maps document id to (the
        content hash it was rebuilt from, chunk ids, index fingerprint, model); a document
        whose hash changed meanwhile keeps its row. Returns the documents left out."""
        left_out = []
        for document_id, (content_hash, chunk_ids, fingerprint, model) in updates.items():
            changed = conn.execute(
                update(documents)
                .where(
                    documents.c.document_id == document_id,
                    documents.c.content_hash == content_hash,
                    self._mine,
                )
                .values(
                    chunk_ids=chunk_ids,
                    index_fingerprint=fingerprint,
                    model=model,
                    updated_at=utcnow(),
                )
            ).rowcount
            if not changed:
                left_out.append(document_id)
        return left_out

    def _insert(self, document_id: str, *, failed_hash: str | None = None, **fields: Any) -> None:
        now = utcnow()
        values = {
            "document_id": document_id,
            "collection": self.collection,
            "warnings": [],
            "chunk_ids": [],
            "pending_chunk_ids": [],
            "stale_chunk_ids": [],
            "created_at": now,
            "updated_at": now,
            "content_hash": failed_hash,
            **fields,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(documents).values(**values))

    def _update_unless_deleted(self, document_id: str, **fields: Any) -> bool:
        return self._update_if(document_id, documents.c.status != DocumentStatus.DELETING, **fields)

    def _update_if(self, document_id: str, condition: Any, **fields: Any) -> bool:
        """Update the row only while `condition` holds, in one statement; returns whether
        it did (no row, or the condition failed: False)."""
        fields["updated_at"] = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(documents)
                .where(documents.c.document_id == document_id, condition, self._mine)
                .values(**fields)
            ).rowcount
        return bool(changed)

    def _update(self, document_id: str, **fields: Any) -> None:
        fields["updated_at"] = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(documents)
                .where(documents.c.document_id == document_id, self._mine)
                .values(**fields)
            )
