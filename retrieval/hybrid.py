"""Question to ranked passages: dense and BM25 rankings fused, near-duplicates collapsed.

On the COVID-QA benchmark (scientific text) BM25 alone beats the small general embedding
model and the fusion of both beats either (shared/docs/environment.md); on questions asked
in other words the dense ranking is the stronger (benchmarks/sets). Both run on every query
and `retrieval.fusion` merges them; an optional cross-encoder reorders the best.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import cast

import numpy as np

from docqa.domain import Chunk, ScoredChunk
from docqa.settings import RetrievalSettings
from retrieval.fusion import fuse
from retrieval.late_interaction import late_interaction
from retrieval.protocols import (
    Embedder,
    LexicalIndex,
    Reranker,
    Retrieval,
    SearchFilters,
    SentencePooling,
    SentenceVectors,
    VectorStore,
)

_WORD = re.compile(r"\w+", re.UNICODE)
# Keyword matches whose vocabulary is compared with the question's (adaptive fusion and
# the not-found evidence).
COVERAGE_DEPTH = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# Late interaction: a candidate's best sentence's word match counts this much beside the
# whole passage's (tuning half of every set: mean hit@5 + MRR@10 1.513 -> 1.521, held-out
# 1.547 -> 1.558; benchmarks/RESULTS.md, stop 21).
LATE_SENTENCE_SHARE = 0.6


class HybridRetriever:
    def __init__(
        self,
        embedder: Embedder,
        vectors: VectorStore,
        lexical: LexicalIndex,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
        sentences: SentenceVectors | None = None,
    ) -> None:
        self.embedder = embedder
        self.vectors = vectors
        self.lexical = lexical
        self.settings = settings
        self.reranker = reranker
        # Late interaction needs the embedder's word outputs: one without them (a custom
        # embedder, a test's fake) ranks without the stage. `ServingRetriever` refuses one
        # when the weight was set explicitly.
        self.late = settings.late_interaction_weight > 0 and isinstance(embedder, SentencePooling)
        # The kept sentence vectors: a fusion signal, and attached to the hits for the
        # extractive answerer.
        self.sentences = sentences

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
        retrieval = self.rank(query, q, dense, lexical, top_k)
        retrieval.timings_ms = {
            "embed": _ms(t1 - t0),
            "dense": _ms(t2 - t1),
            "lexical": _ms(t3 - t2),
            **retrieval.timings_ms,
        }
        return retrieval

    def rank(
        self,
        query: str,
        q: np.ndarray,
        dense: list[tuple[Chunk, float]],
        lexical: list[tuple[Chunk, float]],
        top_k: int,
    ) -> Retrieval:
        """The passages for a question from its two candidate lists (best first): fused,
        near-duplicates collapsed, reranked when a reranker is set, with the signals the
        not-found decision weighs. Benchmarks call it with lists computed once."""
        t0 = time.perf_counter()
        top_texts = [c.text for c, _ in lexical[:COVERAGE_DEPTH]]
        coverage = max(self.lexical.coverage(query, top_texts), default=0.0)
        fused = fuse(dense, lexical, self.settings, coverage)
        matched: dict[str, float] = {}
        kept: dict[str, np.ndarray | None] = {}
        if self.settings.fusion in ("score", "adaptive"):
            if self.settings.sentence_weight > 0:
                fused, matched = self._sentence_match(query, fused)
            if self.sentences is not None and self.settings.sentence_vector_weight > 0:
                fused, kept = self._sentence_vector_match(q, fused)
        depth = top_k
        if self.reranker:
            depth = max(depth, self.settings.rerank_candidates)
        if self.late:
            depth = max(depth, self.settings.late_interaction_candidates)
        hits = collapse_near_duplicates(fused, depth, self.settings.duplicate_threshold)
        late_s = 0.0
        if self.late:
            t_late = time.perf_counter()
            hits = self._late_interaction(query, hits)
            if not self.reranker:
                hits = hits[:top_k]
            late_s = time.perf_counter() - t_late
        signals = {"coverage": round(coverage, 4), "agreement": agreement(hits)}
        if hits:
            top = hits[0].chunk
            if top.chunk_id not in matched:
                matched[top.chunk_id] = max(
                    self.lexical.coverage(query, split_passage(top.text)), default=0.0
                )
            signals["sentence"] = round(matched[top.chunk_id], 4)
        t1 = time.perf_counter()
        timings = {"fuse": _ms(t1 - t0 - late_s)}
        if self.late:
            timings["late_interaction"] = _ms(late_s)
        if self.reranker is not None and hits:
            scores = self.reranker.score(query, [h.chunk.text for h in hits])
            for hit, value in zip(hits, scores, strict=True):
                hit.score = float(value)
            hits = sorted(hits, key=lambda h: -h.score)[:top_k]
            signals["rerank"] = round(hits[0].score, 4)
            timings["rerank"] = _ms(time.perf_counter() - t1)
        self._attach_relevance(hits, q, {c.chunk_id: s for c, s in dense})
        if self.sentences is not None and hits:
            t2 = time.perf_counter()
            self._attach_sentence_vectors(hits, kept)
            timings["sentences"] = _ms(time.perf_counter() - t2)
        return Retrieval(
            hits=hits,
            query_embedding=q,
            nearest=dense[0][1] if dense else 0.0,
            timings_ms=timings,
            signals=signals,
        )

    def _sentence_match(
        self, query: str, fused: list[ScoredChunk]
    ) -> tuple[list[ScoredChunk], dict[str, float]]:
        """Add to the best fused candidates' scores `sentence_weight` times the keyword
        coverage of their best sentence: a passage whose one sentence holds the question's
        rare words beats one that scatters them (on COVID-QA the gold document is ranked
        first far more often than the gold passage; this is what tells its passages apart)."""
        head = fused[: self.settings.sentence_candidates]
        sentences = [split_passage(h.chunk.text) for h in head]
        # Overlapping neighbour chunks and repeated boilerplate share sentences: each
        # distinct one is matched once.
        distinct = list(dict.fromkeys(s for group in sentences for s in group))
        covered = dict(zip(distinct, self.lexical.coverage(query, distinct), strict=True))
        weight = self.settings.sentence_weight
        matched = {}
        for hit, group in zip(head, sentences, strict=True):
            best = max((covered[s] for s in group), default=0.0)
            matched[hit.chunk.chunk_id] = best
            hit.score += weight * best
        head.sort(key=lambda h: (-h.score, h.chunk.chunk_id))
        return head + fused[len(head) :], matched

    def _late_interaction(self, query: str, hits: list[ScoredChunk]) -> list[ScoredChunk]:
        """Add to the best candidates' scores `late_interaction_weight` times their word by
        word match with the question (retrieval/late_interaction.py), and reorder them.
        Each keeps its sentences' matches for the extractive answerer."""
        head = hits[: self.settings.late_interaction_candidates]
        model = cast(SentencePooling, self.embedder)
        matches = late_interaction(model, query, [h.chunk.text for h in head])
        weight = self.settings.late_interaction_weight
        for hit, match in zip(head, matches, strict=True):
            best_sentence = float(match.sentences.max(initial=0.0))
            hit.score += weight * (match.score + LATE_SENTENCE_SHARE * best_sentence)
            hit.sentence_matches = match.sentences
        head.sort(key=lambda h: (-h.score, h.chunk.chunk_id))
        return head + hits[len(head) :]

    def _sentence_vector_match(
        self, q: np.ndarray, fused: list[ScoredChunk]
    ) -> tuple[list[ScoredChunk], dict[str, np.ndarray | None]]:
        """Add to the best fused candidates' scores `sentence_vector_weight` times the cosine
        of their best kept sentence to the question: the meaning-level counterpart of the
        keyword match above (it finds the passage whose one sentence says what a
        paraphrased question asks). Returns what was read for each of them (None: no
        vectors kept), by chunk id."""
        assert self.sentences is not None
        head = fused[: self.settings.sentence_candidates]
        ids = [h.chunk.chunk_id for h in head]
        found = self.sentences.get(ids)
        kept = {cid: found.get(cid) for cid in ids}
        weight = self.settings.sentence_vector_weight
        for hit in head:
            rows = kept.get(hit.chunk.chunk_id)
            if rows is None or not len(rows):
                continue
            # Zero rows are sentences without a kept vector; their cosine (0) is no evidence.
            best = float((rows @ q).max(initial=0.0))
            hit.score += weight * best
        head.sort(key=lambda h: (-h.score, h.chunk.chunk_id))
        return head + fused[len(head) :], kept

    def _attach_sentence_vectors(
        self, hits: list[ScoredChunk], kept: dict[str, np.ndarray | None]
    ) -> None:
        """Each hit's kept sentence vectors (None: none kept), reading only those that the
        fusion did not read already."""
        assert self.sentences is not None
        missing = [h.chunk.chunk_id for h in hits if h.chunk.chunk_id not in kept]
        if missing:
            kept = {**kept, **dict.fromkeys(missing), **self.sentences.get(missing)}
        for hit in hits:
            hit.sentence_vectors = kept.get(hit.chunk.chunk_id)

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


@lru_cache(maxsize=4096)
def split_passage(text: str) -> tuple[str, ...]:
    """A passage's sentences and lines (a rough cut: only keyword shares are taken of them).
    Remembered: the same passages are candidates for many questions."""
    return tuple(p for p in _SENTENCE.split(text) if p.strip()) or (text,)


def agreement(hits: list[ScoredChunk], depth: int = 10) -> float:
    """How both rankings agree on the top passage: 1 when each ranked it first, falling
    with the worse of its two ranks, 0 when one of them did not rank it in `depth`."""
    if not hits:
        return 0.0
    top = hits[0]
    ranks = [top.dense_rank, top.lexical_rank]
    if any(r is None or r > depth for r in ranks):
        return 0.0
    return round(1.0 / max(r for r in ranks if r is not None), 4)


@lru_cache(maxsize=1024)
def _shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset({tuple(words)})
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    shared = len(a & b)
    return shared / max(1, len(a) + len(b) - shared)


def collapse_near_duplicates(
    ranked: list[ScoredChunk], top_k: int, threshold: float
) -> list[ScoredChunk]:
    """Keep the best ranked of chunks whose word-trigram Jaccard similarity exceeds
    `threshold` (the same paragraph in two files, a repeated boilerplate block)."""
    kept: list[ScoredChunk] = []
    kept_shingles: list[frozenset[tuple[str, ...]]] = []
    for hit in ranked:
        sh = _shingles(hit.chunk.text)
        if any(_jaccard(sh, other) >= threshold for other in kept_shingles):
            continue
        kept.append(hit)
        kept_shingles.append(sh)
        if len(kept) == top_k:
            break
    return kept


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
