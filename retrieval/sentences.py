"""Sentence vectors kept beside a collection, so the extractive answerer scores a passage's
sentences without embedding them at question time (the cost that set the ask p95).

Ingestion pools them from the forward pass that embeds the chunk (mean of the sentence's
token outputs, `SentencePooling`), so they cost no extra model run. They are stored per
chunk, one row per sentence of `docqa.text.passage_sentences(chunk.text)`, as int8 (each
row scaled so its largest component is 127; only directions matter, so the scale is not
kept: cosine to the original above 0.9999, a quarter of float32's bytes), in the
same database as the keyword index, and read only for the passages a question retrieved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)

from docqa.db import create_tables, get_engine

metadata = MetaData()

sentence_vectors = Table(
    "docqa_sentence_vectors",
    metadata,
    Column("collection", String(512), primary_key=True),
    Column("chunk_id", String(255), primary_key=True),
    Column("dimension", Integer, nullable=False),
    Column("vectors", LargeBinary, nullable=False),
)

_SCALE = 127.0
_WRITE_BATCH = 500


def pack(vectors: np.ndarray) -> bytes:
    """Rows as int8 bytes, each scaled to use the whole range (zero rows stay zero)."""
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    scaled = vectors * (_SCALE / np.where(peak > 0, peak, 1.0))
    return np.clip(np.rint(scaled), -127, 127).astype(np.int8).tobytes()


def unpack(data: bytes, dimension: int) -> np.ndarray:
    """The rows `pack` stored, renormalised to unit length (zero rows stay zero)."""
    rows = np.frombuffer(data, dtype=np.int8).reshape(-1, dimension).astype(np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


class SentenceVectorStore:
    """The kept sentence vectors of one collection."""

    def __init__(self, database_url: str, collection: str) -> None:
        self.engine = get_engine(database_url)
        create_tables(self.engine, metadata)
        self.collection = collection

    def upsert(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Keep each chunk's sentence vectors (rows: its sentences), replacing any kept."""
        if not vectors:
            return
        rows: list[dict[str, Any]] = [
            {
                "collection": self.collection,
                "chunk_id": chunk_id,
                "dimension": int(v.shape[1]),
                "vectors": pack(v),
            }
            for chunk_id, v in vectors.items()
        ]
        with self.engine.begin() as conn:
            for start in range(0, len(rows), _WRITE_BATCH):
                batch = rows[start : start + _WRITE_BATCH]
                self._forget(conn, [r["chunk_id"] for r in batch])
                conn.execute(insert(sentence_vectors), batch)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _WRITE_BATCH):
                self._forget(conn, ids[start : start + _WRITE_BATCH])

    def _forget(self, conn: Connection, chunk_ids: list[str]) -> None:
        conn.execute(
            delete(sentence_vectors).where(
                sentence_vectors.c.collection == self.collection,
                sentence_vectors.c.chunk_id.in_(chunk_ids),
            )
        )

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(sentence_vectors).where(sentence_vectors.c.collection == self.collection)
            )

    def get(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The kept vectors of those chunks that have some."""
        if not chunk_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    sentence_vectors.c.chunk_id,
                    sentence_vectors.c.dimension,
                    sentence_vectors.c.vectors,
                ).where(
                    sentence_vectors.c.collection == self.collection,
                    sentence_vectors.c.chunk_id.in_(list(chunk_ids)),
                )
            )
            return {r[0]: unpack(r[2], r[1]) for r in rows}

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(sentence_vectors.c.collection == self.collection)
                ).scalar_one()
            )
