"""BM25 keyword retrieval with bm25s, kept in step with the vector store.

bm25s builds a static index, so the chunk texts live in a table beside the record store
(SQLite or PostgreSQL: every process sees the same corpus) with a generation counter that
every write bumps. A searcher rebuilds its in-memory index when the generation moved, and
saves it to the data folder so a restart does not pay for tokenising the corpus again.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Text, delete, insert, select
from sqlalchemy import update as sql_update

from docqa.db import create_tables, get_engine
from docqa.domain import Chunk
from retrieval.protocols import SearchFilters

metadata = MetaData()

lexical_chunks = Table(
    "docqa_lexical_chunks",
    metadata,
    Column("collection", String(512), primary_key=True),
    Column("chunk_id", String(255), primary_key=True),
    Column("text", Text, nullable=False),
    Column("meta", JSON, nullable=False),
)

lexical_state = Table(
    "docqa_lexical_state",
    metadata,
    Column("collection", String(512), primary_key=True),
    Column("generation", Integer, nullable=False),
)

_WRITE_BATCH = 500


@dataclass
class _Built:
    generation: int
    retriever: Any
    ids: list[str]
    texts: list[str]
    metas: list[dict[str, Any]]


class BM25Index:
    """English BM25 (Lucene variant) over stemmed words without stopwords."""

    def __init__(self, database_url: str, collection: str, cache_dir: Path | None = None) -> None:
        self.engine = get_engine(database_url)
        create_tables(self.engine, metadata)
        self.collection = collection
        self.cache_dir = cache_dir / collection if cache_dir else None
        self._built: _Built | None = None
        self._lock = threading.Lock()
        self._stemmer: Any = None

    # -- writes ----------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        with self.engine.begin() as conn:
            for start in range(0, len(chunks), _WRITE_BATCH):
                batch = chunks[start : start + _WRITE_BATCH]
                conn.execute(
                    delete(lexical_chunks).where(
                        lexical_chunks.c.collection == self.collection,
                        lexical_chunks.c.chunk_id.in_([c.chunk_id for c in batch]),
                    )
                )
                conn.execute(
                    insert(lexical_chunks),
                    [
                        {
                            "collection": self.collection,
                            "chunk_id": c.chunk_id,
                            "text": c.text,
                            "meta": c.metadata(),
                        }
                        for c in batch
                    ],
                )
            self._bump(conn)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        ids = list(chunk_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _WRITE_BATCH):
                conn.execute(
                    delete(lexical_chunks).where(
                        lexical_chunks.c.collection == self.collection,
                        lexical_chunks.c.chunk_id.in_(ids[start : start + _WRITE_BATCH]),
                    )
                )
            self._bump(conn)

    def drop(self) -> None:
        """Forget the whole collection (its index was dropped)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(lexical_chunks).where(lexical_chunks.c.collection == self.collection)
            )
            conn.execute(delete(lexical_state).where(lexical_state.c.collection == self.collection))
        if self.cache_dir and self.cache_dir.exists():
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def _bump(self, conn: Any) -> None:
        changed = conn.execute(
            sql_update(lexical_state)
            .where(lexical_state.c.collection == self.collection)
            .values(generation=lexical_state.c.generation + 1)
        ).rowcount
        if not changed:
            conn.execute(insert(lexical_state).values(collection=self.collection, generation=1))

    # -- reads -----------------------------------------------------------------------

    def generation(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(lexical_state.c.generation).where(
                    lexical_state.c.collection == self.collection
                )
            ).scalar()
        return int(value or 0)

    def count(self) -> int:
        return len(self.ids())

    def ids(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(lexical_chunks.c.chunk_id).where(
                    lexical_chunks.c.collection == self.collection
                )
            )
            return [r[0] for r in rows]

    def search(
        self, query: str, k: int, filters: SearchFilters | None = None
    ) -> list[tuple[Chunk, float]]:
        built = self._current()
        if built is None or not built.ids:
            return []
        vocab = built.retriever.vocab_dict
        terms = [t for t in self._tokenize([query], ids=False)[0] if t in vocab]
        if not terms:
            return []
        mask = None
        if filters:
            mask = np.array([1.0 if filters.matches(m) else 0.0 for m in built.metas])
            if not mask.any():
                return []
        k = min(k, len(built.ids))
        docs, scores = built.retriever.retrieve(
            [terms], k=k, show_progress=False, weight_mask=mask, n_threads=1
        )
        out = []
        for idx, score in zip(docs[0], scores[0], strict=True):
            if score <= 0:
                continue
            i = int(idx)
            out.append(
                (Chunk.from_stored(built.ids[i], built.texts[i], built.metas[i]), float(score))
            )
        return out

    def coverage(self, query: str, texts: Sequence[str]) -> list[float]:
        """Per text, the share of the query's terms it holds, each term weighted by its IDF
        in this index (0 to 1). A term the index has never seen weighs as much as the
        rarest: a question in words the documents do not use covers little."""
        built = self._current()
        terms = set(self._tokenize([query], ids=False)[0])
        if built is None or not built.ids or not terms or not texts:
            return [0.0] * len(texts)
        weights = {t: self._idf(built, t) for t in terms}
        total = sum(weights.values())
        return [
            sum(weights[t] for t in terms.intersection(tokens)) / total if total else 0.0
            for tokens in self._tokenize(list(texts), ids=False)
        ]

    @staticmethod
    def _idf(built: _Built, term: str) -> float:
        """Lucene's BM25 IDF of a term, from the index's document frequencies."""
        n = len(built.ids)
        index = built.retriever.vocab_dict.get(term)
        if index is None:
            df = 0
        else:
            indptr = built.retriever.scores["indptr"]
            df = int(indptr[index + 1] - indptr[index])
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))

    def _tokenize(self, texts: list[str], *, ids: bool) -> Any:
        import bm25s

        if self._stemmer is None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer("english")
        return bm25s.tokenize(
            texts, stopwords="en", stemmer=self._stemmer, return_ids=ids, show_progress=False
        )

    def _current(self) -> _Built | None:
        generation = self.generation()
        built = self._built
        if built is not None and built.generation == generation:
            return built
        with self._lock:
            if self._built is None or self._built.generation != generation:
                self._built = self._build(generation)
            return self._built

    def _build(self, generation: int) -> _Built:
        import bm25s

        with self.engine.connect() as conn:
            rows = conn.execute(
                select(lexical_chunks.c.chunk_id, lexical_chunks.c.text, lexical_chunks.c.meta)
                .where(lexical_chunks.c.collection == self.collection)
                .order_by(lexical_chunks.c.chunk_id)
            ).all()
        ids = [r[0] for r in rows]
        texts = [r[1] for r in rows]
        metas = [dict(r[2]) for r in rows]
        retriever = self._load_saved(generation, len(ids))
        if retriever is None and ids:
            retriever = bm25s.BM25()
            retriever.index(self._tokenize(texts, ids=True), show_progress=False)
            self._save(retriever, generation, len(ids))
        return _Built(generation, retriever, ids, texts, metas)

    def _load_saved(self, generation: int, size: int) -> Any:
        if self.cache_dir is None:
            return None
        folder = self.cache_dir / "bm25s"
        stamp = self.cache_dir / "stamp.json"
        try:
            if json.loads(stamp.read_text()) != {"generation": generation, "size": size}:
                return None
            import bm25s

            return bm25s.BM25.load(str(folder))
        except (OSError, ValueError, KeyError):
            return None

    def _save(self, retriever: Any, generation: int, size: int) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            retriever.save(str(self.cache_dir / "bm25s"))
            (self.cache_dir / "stamp.json").write_text(
                json.dumps({"generation": generation, "size": size})
            )
        except OSError:
            # The cache only saves start-up time; a read-only data folder is not an error.
            pass
