"""Question to ranked passages: dense and BM25 rankings fused, near-duplicates collapsed.

On the COVID-QA benchmark (scientific text) BM25 alone beats the small general embedding
model and the fusion of both beats either (shared/docs/environment.md), so both run on
every query and reciprocal rank fusion merges them.
"""

from __future__ import annotations

import re
import time

import numpy as np

from docqa.domain import Chunk, ScoredChunk
from docqa.settings import RetrievalSettings
from retrieval.protocols import Embedder, LexicalIndex, Retrieval, SearchFilters, VectorStore

_WORD = re.compile(r"\w+", re.UNICODE)


class HybridRetriever:
    def __init__(
        self,
        embedder: Embedder,
        vectors: VectorStore,
        lexical: LexicalIndex,
        settings: RetrievalSettings,
    ) -> None:
        self.embedder = embedder
        self.vectors = vectors
        self.lexical = lexical
        self.settings = settings

    def retrieve(
        self, query: str, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> Retrieval:
        top_k = top_k or self.settings.top_k
        n = max(self.settings.candidates, top_k)
        t0 = time.perf_counter()
        q = self.embedder.embed_query(query)
        t1 = time.perf_counter()
        dense = self.vectors.query(q, n, filters)
        t2 = time.perf_counter()
        lexical = self.lexical.search(query, n, filters)
        t3 = time.perf_counter()
        fused = self._fuse(dense, lexical)
        hits = collapse_near_duplicates(fused, top_k, self.settings.duplicate_threshold)
        self._attach_relevance(hits, q, dict((c.chunk_id, s) for c, s in dense))
        t4 = time.perf_counter()
        return Retrieval(
            hits=hits,
            query_embedding=q,
            nearest=dense[0][1] if dense else 0.0,
            timings_ms={
                "embed": _ms(t1 - t0),
                "dense": _ms(t2 - t1),
                "lexical": _ms(t3 - t2),
                "fuse": _ms(t4 - t3),
            },
        )

    def _fuse(
        self, dense: list[tuple[Chunk, float]], lexical: list[tuple[Chunk, float]]
    ) -> list[ScoredChunk]:
        """Weighted reciprocal rank fusion (Cormack et al., 2009)."""
        k = self.settings.rrf_k
        by_id: dict[str, ScoredChunk] = {}
        for rank, (chunk, _) in enumerate(dense, start=1):
            hit = by_id.setdefault(chunk.chunk_id, ScoredChunk(chunk=chunk, score=0.0))
            hit.score += self.settings.dense_weight / (k + rank)
            hit.dense_rank = rank
        for rank, (chunk, _) in enumerate(lexical, start=1):
            hit = by_id.setdefault(chunk.chunk_id, ScoredChunk(chunk=chunk, score=0.0))
            hit.score += self.settings.lexical_weight / (k + rank)
            hit.lexical_rank = rank
        # Ties (a chunk ranked r by one list, another ranked r by the other) are broken by
        # chunk id, so the same question over the same index always ranks the same way.
        return sorted(by_id.values(), key=lambda h: (-h.score, h.chunk.chunk_id))

    def _attach_relevance(
        self, hits: list[ScoredChunk], q: np.ndarray, dense_sims: dict[str, float]
    ) -> None:
        """Cosine similarity to the question for every hit, fetching the stored vectors of
        hits that only BM25 found."""
        missing = [h.chunk.chunk_id for h in hits if h.chunk.chunk_id not in dense_sims]
        stored = self.vectors.embeddings(missing) if missing else {}
        for hit in hits:
            cid = hit.chunk.chunk_id
            if cid in dense_sims:
                hit.relevance = dense_sims[cid]
            elif cid in stored:
                hit.relevance = float(np.dot(stored[cid], q))


def _shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def collapse_near_duplicates(
    ranked: list[ScoredChunk], top_k: int, threshold: float
) -> list[ScoredChunk]:
    """Keep the best ranked of chunks whose word-trigram Jaccard similarity exceeds
    `threshold` (the same paragraph in two files, a repeated boilerplate block)."""
    kept: list[ScoredChunk] = []
    kept_shingles: list[set[tuple[str, ...]]] = []
    for hit in ranked:
        sh = _shingles(hit.chunk.text)
        if any(len(sh & other) / max(1, len(sh | other)) >= threshold for other in kept_shingles):
            continue
        kept.append(hit)
        kept_shingles.append(sh)
        if len(kept) == top_k:
            break
    return kept


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
