"""BM25 keyword retrieval, kept in step with the vector store, incrementally.

The chunk texts live in a table beside the record store (SQLite or PostgreSQL: the API,
the CLI and Airflow workers see one corpus). Every write takes the next number of the
collection's generation counter first (the row lock orders writers, so generations commit
in order) and stamps the rows it writes with it; a delete leaves a tombstone stamped the
same way. A searcher remembers the generation its in-memory index reflects and, on every
search, applies only the rows and tombstones stamped after it: a write costs what it
writes in every process, never a rebuild of the whole corpus.

In memory, postings are kept in two segments: a compact base (term -> chunk slots and
term frequencies, CSC arrays) and a small delta of chunks added since; removed chunks are
masked. When the delta or the masked share grows, both are merged into a new base, which
is also saved to the data folder so a restart loads arrays instead of tokenising the
corpus. Scores are BM25 (Lucene variant, k1 1.5, b 0.75) with the corpus statistics (N,
average length, document frequencies) of the live chunks, computed at query time, so they
do not depend on how the segments happen to be split.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy import update as sql_update

from docqa.db import create_tables, get_engine
from docqa.domain import Chunk
from retrieval.protocols import SearchFilters

log = logging.getLogger(__name__)

metadata = MetaData()

lexical_chunks = Table(
    "docqa_lexical_chunks",
    metadata,
    Column("collection", String(512), primary_key=True),
    Column("chunk_id", String(255), primary_key=True),
    Column("text", Text, nullable=False),
    Column("meta", JSON, nullable=False),
    # The write that put the row here (rows of older docqa versions: 0).
    Column("generation", Integer, nullable=False, server_default="0"),
)

lexical_deleted = Table(
    "docqa_lexical_deleted",
    metadata,
    Column("collection", String(512), primary_key=True),
    Column("chunk_id", String(255), primary_key=True),
    Column("generation", Integer, nullable=False),
)

lexical_state = Table(
    "docqa_lexical_state",
    metadata,
    Column("collection", String(512), primary_key=True),
    Column("generation", Integer, nullable=False),
)

# What changed since a generation: declared on their tables (an Index binds to its columns'
# table), so `create_tables` makes them, also on a store an older docqa made without them.
Index("ix_docqa_lexical_chunks_gen", lexical_chunks.c.collection, lexical_chunks.c.generation)
Index("ix_docqa_lexical_deleted_gen", lexical_deleted.c.collection, lexical_deleted.c.generation)

_WRITE_BATCH = 500
_READ_BATCH = 5000
K1, B = 1.5, 0.75
# Merge the delta into the base when it holds this many chunks, or this share of the base.
_MERGE_MIN = 2000
_MERGE_SHARE = 0.10
# ... or when this share of the slots is masked (removed or replaced chunks).
_DEAD_SHARE = 0.25
_SNAPSHOT_VERSION = 1
# Rows read at once from which on they are counted with numpy (`Postings.add_many`).
_BULK = _MERGE_MIN
_FILTER_FIELDS = ("document_id", "source", "file_type")


# A word as bm25s tokenises: two or more word characters.
WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """bm25s's English stopwords (lower case): the words the keyword index leaves out."""
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


class Analyzer:
    """Text to index terms as bm25s tokenises with English stopwords and the Snowball
    stemmer: lower case, words of two or more word characters, stopwords out, stemmed."""

    _TOKEN = WORD_TOKEN

    def __init__(self) -> None:
        import Stemmer

        self._stem = Stemmer.Stemmer("english").stemWords
        self._stopwords = english_stopwords()
        # Each distinct word is stemmed once (a corpus has far fewer words than tokens).
        self._stems: dict[str, str] = {}

    def terms(self, text: str) -> list[str]:
        words = [w for w in self._TOKEN.findall(text.lower()) if w not in self._stopwords]
        stems = self._stems
        new = [w for w in set(words) if w not in stems]
        if new:
            if len(stems) > 1_000_000:
                # A fresh dict, not clear(): other threads may be reading the old one.
                self._stems = stems = {}
            stems.update(zip(new, self._stem(new), strict=True))
        return [stems[w] for w in words]


class _Grow:
    """A numpy array that grows by doubling (slot attributes appended one chunk at a time)."""

    def __init__(self, dtype: Any, data: np.ndarray | None = None) -> None:
        self.data = np.asarray(data, dtype=dtype) if data is not None else np.zeros(64, dtype)
        self.size = 0 if data is None else len(self.data)

    def append(self, value: Any) -> None:
        if self.size == len(self.data):
            bigger = np.zeros(max(64, 2 * len(self.data)), self.data.dtype)
            bigger[: self.size] = self.data[: self.size]
            self.data = bigger
        self.data[self.size] = value
        self.size += 1

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]


class Postings:
    """The keyword index of one collection in memory: a base segment, a delta segment and
    a mask of removed slots. Not thread-safe: `BM25Index` holds a lock around it."""

    def __init__(self) -> None:
        self.generation = 0
        self.vocab: dict[str, int] = {}
        self.ids: list[str] = []
        self.slot_of: dict[str, int] = {}
        self.alive = _Grow(np.bool_)
        self.length = _Grow(np.float32)
        self.codes = {f: _Grow(np.int32) for f in _FILTER_FIELDS}
        self.code_of: dict[str, dict[str, int]] = {f: {} for f in _FILTER_FIELDS}
        # Base segment: postings of term t are slots[indptr[t]:indptr[t+1]] (and tfs).
        self.indptr = np.zeros(1, np.int64)
        self.slots = np.zeros(0, np.int32)
        self.tfs = np.zeros(0, np.float32)
        self.base_size = 0
        # Delta segment: term -> (slots, tfs) of chunks added since the last merge.
        self.delta: dict[int, tuple[list[int], list[int]]] = {}
        # Chunks added in bulk, as (slots, term ids, tfs) arrays: merged before any search.
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.live = 0
        self.total_length = 0.0

    # -- changes ---------------------------------------------------------------------

    def add(self, chunk_id: str, terms: list[str], meta: dict[str, Any]) -> None:
        """Index a chunk, replacing a chunk of the same id."""
        self.remove(chunk_id)
        slot = len(self.ids)
        self.ids.append(chunk_id)
        self.slot_of[chunk_id] = slot
        for term, tf in Counter(terms).items():
            tid = self.vocab.setdefault(term, len(self.vocab))
            post = self.delta.get(tid)
            if post is None:
                post = self.delta[tid] = ([], [])
            post[0].append(slot)
            post[1].append(tf)
        self.alive.append(True)
        self.length.append(len(terms))
        for field in _FILTER_FIELDS:
            table = self.code_of[field]
            value = str(meta.get(field, ""))
            self.codes[field].append(table.setdefault(value, len(table)))
        self.live += 1
        self.total_length += len(terms)

    def add_many(self, rows: Sequence[tuple[str, list[str], dict[str, Any]]]) -> None:
        """`add` for many chunks at once, counted with numpy; merged before the next search."""
        for cid, _, _ in rows:
            self.remove(cid)
        first = len(self.ids)
        vocab = self.vocab
        flat = [vocab.setdefault(t, len(vocab)) for _, terms, _ in rows for t in terms]
        lengths = np.fromiter((len(terms) for _, terms, _ in rows), np.int64, len(rows))
        slots = np.repeat(np.arange(first, first + len(rows), dtype=np.int64), lengths)
        keys, tfs = np.unique(slots * len(vocab) + np.asarray(flat, np.int64), return_counts=True)
        self.pending.append(
            (
                (keys // len(vocab)).astype(np.int32),
                (keys % len(vocab)).astype(np.int32),
                tfs.astype(np.float32),
            )
        )
        for i, (cid, terms, meta) in enumerate(rows):
            self.ids.append(cid)
            self.slot_of[cid] = first + i
            self.alive.append(True)
            self.length.append(len(terms))
            for field in _FILTER_FIELDS:
                table = self.code_of[field]
                self.codes[field].append(table.setdefault(str(meta.get(field, "")), len(table)))
        self.live += len(rows)
        self.total_length += float(lengths.sum())

    def remove(self, chunk_id: str) -> None:
        slot = self.slot_of.pop(chunk_id, None)
        if slot is None:
            return
        self.alive.data[slot] = False
        self.live -= 1
        self.total_length -= float(self.length.data[slot])

    def needs_merge(self) -> bool:
        if self.pending:
            return True
        delta = len(self.ids) - self.base_size
        dead = len(self.ids) - self.live
        return delta >= max(_MERGE_MIN, _MERGE_SHARE * self.base_size) or (
            dead > _MERGE_MIN and dead >= _DEAD_SHARE * len(self.ids)
        )

    def merge(self) -> None:
        """One base segment of the live chunks, slots renumbered, delta empty."""
        from scipy.sparse import csc_matrix

        n_terms = len(self.vocab)
        base_terms = len(self.indptr) - 1
        cols: list[np.ndarray] = [
            np.repeat(np.arange(base_terms, dtype=np.int32), np.diff(self.indptr))
        ]
        rows: list[np.ndarray] = [self.slots]
        data: list[np.ndarray] = [self.tfs]
        for tid, (delta_slots, delta_tfs) in self.delta.items():
            cols.append(np.full(len(delta_slots), tid, np.int32))
            rows.append(np.asarray(delta_slots, np.int32))
            data.append(np.asarray(delta_tfs, np.float32))
        for slots, tids, tfs in self.pending:
            rows.append(slots)
            cols.append(tids)
            data.append(tfs)
        row = np.concatenate(rows)
        col = np.concatenate(cols)
        val = np.concatenate(data)
        alive = self.alive.view
        keep = alive[row]
        renumber = np.cumsum(alive, dtype=np.int64) - 1
        matrix = csc_matrix(
            (val[keep], (renumber[row[keep]], col[keep])), shape=(self.live, n_terms)
        )
        live_slots = np.flatnonzero(alive)
        self.indptr = matrix.indptr.astype(np.int64)
        self.slots = matrix.indices.astype(np.int32)
        self.tfs = matrix.data.astype(np.float32)
        self.ids = [self.ids[i] for i in live_slots]
        self.slot_of = {cid: i for i, cid in enumerate(self.ids)}
        self.alive = _Grow(np.bool_, np.ones(len(self.ids), np.bool_))
        self.length = _Grow(np.float32, self.length.view[live_slots])
        self.codes = {f: _Grow(np.int32, g.view[live_slots]) for f, g in self.codes.items()}
        self.base_size = len(self.ids)
        self.delta = {}
        self.pending = []
        self.total_length = float(self.length.view.sum())

    # -- search ----------------------------------------------------------------------

    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        parts_s, parts_t = [], []
        if tid < len(self.indptr) - 1:
            lo, hi = self.indptr[tid], self.indptr[tid + 1]
            parts_s.append(self.slots[lo:hi])
            parts_t.append(self.tfs[lo:hi])
        extra = self.delta.get(tid)
        if extra is not None:
            parts_s.append(np.asarray(extra[0], np.int32))
            parts_t.append(np.asarray(extra[1], np.float32))
        if not parts_s:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        if len(parts_s) == 1:
            return parts_s[0], parts_t[0]
        return np.concatenate(parts_s), np.concatenate(parts_t)

    def search(
        self, terms: list[str], k: int, filters: SearchFilters | None
    ) -> list[tuple[str, float]]:
        """The k best (chunk id, BM25 score) with a positive score."""
        wanted = Counter(self.vocab[t] for t in terms if t in self.vocab)
        if not wanted or not self.live:
            return []
        n, avg = self.live, self.total_length / self.live
        alive, length = self.alive.view, self.length.view
        scores = np.zeros(len(self.ids), np.float32)
        for tid, times in wanted.items():
            slots, tfs = self._postings(tid)
            live = alive[slots]
            slots, tfs = slots[live], tfs[live]
            df = len(slots)
            if not df:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            norm = K1 * (1 - B + B * length[slots] / avg)
            scores[slots] += (times * idf) * tfs / (norm + tfs)
        if filters:
            scores *= self._mask(filters)
        hit = np.flatnonzero(scores > 0)
        if not len(hit):
            return []
        if len(hit) > k:
            # Keep every chunk tied with the k-th, so the cut below does not depend on how
            # slots happen to be numbered in this process.
            kth = np.partition(scores[hit], len(hit) - k)[len(hit) - k]
            hit = hit[scores[hit] >= kth]
        ids = self.ids
        order = sorted(hit.tolist(), key=lambda s: (-scores[s], ids[s]))[:k]
        return [(ids[s], float(scores[s])) for s in order]

    def idf(self, term: str) -> float:
        """Lucene's BM25 IDF of a term among the live chunks (an unknown term: df 0)."""
        tid = self.vocab.get(term)
        df = 0
        if tid is not None:
            slots, _ = self._postings(tid)
            df = int(self.alive.view[slots].sum())
        return math.log(1 + (self.live - df + 0.5) / (df + 0.5))

    def _mask(self, filters: SearchFilters) -> np.ndarray:
        mask = np.ones(len(self.ids), np.float32)
        for field, values in (
            ("document_id", filters.document_ids),
            ("source", filters.sources),
            ("file_type", filters.file_types),
        ):
            if values:
                codes = [self.code_of[field][v] for v in values if v in self.code_of[field]]
                mask *= np.isin(self.codes[field].view, np.asarray(codes, np.int32))
        return mask

    # -- snapshot --------------------------------------------------------------------

    def save(self, folder: Path, collection: str) -> None:
        """Write the base segment (call right after `merge`) atomically into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
        try:
            arrays: dict[str, Any] = {
                "indptr": self.indptr,
                "slots": self.slots,
                "tfs": self.tfs,
                "length": self.length.view,
                **{f"code_{f}": g.view for f, g in self.codes.items()},
            }
            np.savez(tmp / "arrays.npz", **arrays)
            header = {
                "version": _SNAPSHOT_VERSION,
                "collection": collection,
                "generation": self.generation,
                "vocab": list(self.vocab),
                "ids": self.ids,
                "code_of": {f: list(t) for f, t in self.code_of.items()},
            }
            (tmp / "header.json").write_text(json.dumps(header))
            target = folder / "snapshot"
            old = folder / f".old-{os.getpid()}-{threading.get_ident()}"
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path, collection: str) -> Postings | None:
        target = folder / "snapshot"
        try:
            header = json.loads((target / "header.json").read_text())
            if header.get("version") != _SNAPSHOT_VERSION or header["collection"] != collection:
                return None
            with np.load(target / "arrays.npz") as arrays:
                p = cls()
                p.generation = int(header["generation"])
                p.vocab = {t: i for i, t in enumerate(header["vocab"])}
                p.ids = list(header["ids"])
                p.slot_of = {cid: i for i, cid in enumerate(p.ids)}
                p.indptr = arrays["indptr"]
                p.slots = arrays["slots"]
                p.tfs = arrays["tfs"]
                p.length = _Grow(np.float32, arrays["length"])
                p.codes = {f: _Grow(np.int32, arrays[f"code_{f}"]) for f in _FILTER_FIELDS}
            p.code_of = {f: {v: i for i, v in enumerate(vs)} for f, vs in header["code_of"].items()}
            p.alive = _Grow(np.bool_, np.ones(len(p.ids), np.bool_))
            p.base_size = p.live = len(p.ids)
            p.total_length = float(p.length.view.sum())
            if len(p.indptr) - 1 > len(p.vocab) or len(p.length.view) != len(p.ids):
                return None
            return p
        except (OSError, ValueError, KeyError, TypeError):
            return None


class BM25Index:
    """English BM25 over stemmed words without stopwords, updated incrementally."""

    def __init__(self, database_url: str, collection: str, cache_dir: Path | None = None) -> None:
        self.engine = get_engine(database_url)
        create_tables(self.engine, metadata)
        self.collection = collection
        self.cache_dir = cache_dir / collection if cache_dir else None
        self._postings: Postings | None = None
        self._lock = threading.Lock()
        self._analyzer: Analyzer | None = None

    @property
    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            self._analyzer = Analyzer()
        return self._analyzer

    # -- writes ----------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        with self.engine.begin() as conn:
            generation = self._next_generation(conn)
            for start in range(0, len(chunks), _WRITE_BATCH):
                batch = chunks[start : start + _WRITE_BATCH]
                self._forget(conn, [c.chunk_id for c in batch])
                conn.execute(
                    insert(lexical_chunks),
                    [
                        {
                            "collection": self.collection,
                            "chunk_id": c.chunk_id,
                            "text": c.text,
                            "meta": c.metadata(),
                            "generation": generation,
                        }
                        for c in batch
                    ],
                )

    def _forget(self, conn: Any, chunk_ids: list[str]) -> None:
        """Remove the rows and the tombstones of these chunks (before writing either anew)."""
        for table in (lexical_chunks, lexical_deleted):
            conn.execute(
                delete(table).where(
                    table.c.collection == self.collection, table.c.chunk_id.in_(chunk_ids)
                )
            )

    def delete(self, chunk_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return
        with self.engine.begin() as conn:
            generation = self._next_generation(conn)
            for start in range(0, len(ids), _WRITE_BATCH):
                batch = ids[start : start + _WRITE_BATCH]
                self._forget(conn, batch)
                conn.execute(
                    insert(lexical_deleted),
                    [
                        {"collection": self.collection, "chunk_id": cid, "generation": generation}
                        for cid in batch
                    ],
                )

    def drop(self) -> None:
        """Forget the whole collection (its index was dropped)."""
        with self.engine.begin() as conn:
            for table in (lexical_chunks, lexical_deleted, lexical_state):
                conn.execute(delete(table).where(table.c.collection == self.collection))
        if self.cache_dir and self.cache_dir.exists():
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        with self._lock:
            self._postings = None

    def _next_generation(self, conn: Any) -> int:
        """Take the next generation number. First statement of a write: the row lock it
        takes (PostgreSQL) or the write lock (SQLite) is held to commit, so a reader that
        sees generation g committed also sees every write stamped g or lower."""
        changed = conn.execute(
            sql_update(lexical_state)
            .where(lexical_state.c.collection == self.collection)
            .values(generation=lexical_state.c.generation + 1)
        ).rowcount
        if not changed:
            conn.execute(insert(lexical_state).values(collection=self.collection, generation=1))
            return 1
        return int(
            conn.execute(
                select(lexical_state.c.generation).where(
                    lexical_state.c.collection == self.collection
                )
            ).scalar_one()
        )

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
        terms = self.analyzer.terms(query)
        if not terms or k <= 0:
            return []
        with self._lock:
            postings = self._refresh()
            ranked = postings.search(terms, k, filters)
        if not ranked:
            return []
        stored = self._fetch([cid for cid, _ in ranked])
        return [(stored[cid], score) for cid, score in ranked if cid in stored]

    def coverage(self, query: str, texts: Sequence[str]) -> list[float]:
        """Per text, the share of the query's terms it holds, each term weighted by its IDF
        in this index (0 to 1). A term the index has never seen weighs as much as the
        rarest: a question in words the documents do not use covers little."""
        terms = set(self.analyzer.terms(query))
        if not terms or not texts:
            return [0.0] * len(texts)
        with self._lock:
            postings = self._refresh()
            if not postings.live:
                return [0.0] * len(texts)
            weights = {t: postings.idf(t) for t in terms}
        total = sum(weights.values())
        if not total:
            return [0.0] * len(texts)
        return [
            sum(weights[t] for t in terms.intersection(self.analyzer.terms(text))) / total
            for text in texts
        ]

    def _fetch(self, chunk_ids: list[str]) -> dict[str, Chunk]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(lexical_chunks.c.chunk_id, lexical_chunks.c.text, lexical_chunks.c.meta)
                .where(lexical_chunks.c.collection == self.collection)
                .where(lexical_chunks.c.chunk_id.in_(chunk_ids))
            )
            return {r[0]: Chunk.from_stored(r[0], r[1], dict(r[2])) for r in rows}

    # -- keeping the in-memory index current ---------------------------------------------

    def _refresh(self) -> Postings:
        """The in-memory index at the committed generation (call with the lock held)."""
        generation = self.generation()
        postings = self._postings
        if postings is None or generation < postings.generation:
            # First search, or the collection was dropped and written again.
            postings = self._load_snapshot(generation) or Postings()
        if postings.generation < generation:
            self._apply_changes(postings, generation)
            if postings.needs_merge():
                t0 = time.perf_counter()
                postings.merge()
                log.info(
                    "keyword index %s: merged %d chunks in %.2f s",
                    self.collection,
                    postings.live,
                    time.perf_counter() - t0,
                )
                self._save_snapshot(postings)
        self._postings = postings
        return postings

    def _apply_changes(self, postings: Postings, generation: int) -> None:
        """Apply the rows and tombstones stamped after the index's generation, up to
        `generation` (later ones belong to writes not committed when it was read)."""
        after = postings.generation
        with self.engine.connect() as conn:
            removed = conn.execute(
                select(lexical_deleted.c.chunk_id).where(
                    lexical_deleted.c.collection == self.collection,
                    lexical_deleted.c.generation > after,
                    lexical_deleted.c.generation <= generation,
                )
            )
            for (cid,) in removed:
                postings.remove(cid)
            query = select(
                lexical_chunks.c.chunk_id, lexical_chunks.c.text, lexical_chunks.c.meta
            ).where(
                lexical_chunks.c.collection == self.collection,
                lexical_chunks.c.generation <= generation,
            )
            if after:  # from scratch, rows of older docqa versions (generation 0) count too
                query = query.where(lexical_chunks.c.generation > after)
            rows = conn.execution_options(stream_results=True).execute(query)
            for batch in rows.partitions(_READ_BATCH):
                self._add_rows(postings, batch)
        postings.generation = generation

    def _add_rows(self, postings: Postings, rows: Sequence[Any]) -> None:
        terms = self.analyzer.terms
        if len(rows) >= _BULK:
            postings.add_many([(cid, terms(text), meta) for cid, text, meta in rows])
            return
        for cid, text, meta in rows:
            postings.add(cid, terms(text), meta)

    def _load_snapshot(self, generation: int) -> Postings | None:
        if self.cache_dir is None:
            return None
        postings = Postings.load(self.cache_dir, self.collection)
        if postings is None or postings.generation > generation:
            return None
        return postings

    def _save_snapshot(self, postings: Postings) -> None:
        if self.cache_dir is None:
            return
        try:
            postings.save(self.cache_dir, self.collection)
        except OSError as exc:
            # The snapshot only saves start-up time; a read-only data folder is not an error.
            log.warning("cannot save the keyword index snapshot: %s", exc)
