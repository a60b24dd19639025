"""Merging the dense and the BM25 ranking into one.

Every method takes the two candidate lists (best first, with their cosine and BM25 scores)
and returns the fused ranking; `fuse` picks one by name (`DOCQA_RETRIEVAL__FUSION`).

- `weighted`: reciprocal rank fusion with fixed weights (Cormack et al., 2009). Tuned on
  COVID-QA, where BM25 is the stronger ranking; the fixed lexical weight hurts questions
  asked in other words than the document's (benchmarks/RESULTS.md, issue 13).
- `rrf`: reciprocal rank fusion with equal weights.
- `score`: a convex combination of the two scores, each scaled to [0, 1] within the
  question's candidates (BM25 by its best score, the cosine by its range).
- `adaptive`: `score` whose dense share follows the question: how much of its
  (IDF-weighted) vocabulary the best keyword matches hold. A question whose rare words all
  occur in a passage is a keyword question and BM25 weighs more; one asked in other words
  matches few of its words anywhere, and the dense ranking weighs more.

With `score` and `adaptive`, the retriever then adds the keyword coverage of each top
candidate's best sentence (`retrieval.hybrid`, `sentence_weight`). Figures per set:
benchmarks/RESULTS.md, issue 13.
"""

from __future__ import annotations

from collections.abc import Sequence

from docqa.domain import Chunk, ScoredChunk
from docqa.settings import RetrievalSettings

Ranked = Sequence[tuple[Chunk, float]]


def fuse(
    dense: Ranked, lexical: Ranked, settings: RetrievalSettings, coverage: float = 1.0
) -> list[ScoredChunk]:
    """The fused ranking of the two candidate lists, by `settings.fusion`.

    :param coverage: for `adaptive`, the IDF-weighted share of the question's terms found
        in its best keyword match (0 to 1; `LexicalIndex.coverage`).
    """
    method = settings.fusion
    if method == "score":
        return score_fusion(dense, lexical, settings.score_alpha)
    if method == "rrf":
        return rank_fusion(dense, lexical, settings.rrf_k, 1.0, 1.0)
    if method == "adaptive":
        return score_fusion(dense, lexical, adaptive_alpha(coverage, settings))
    return rank_fusion(
        dense, lexical, settings.rrf_k, settings.dense_weight, settings.lexical_weight
    )


def adaptive_alpha(coverage: float, settings: RetrievalSettings) -> float:
    """The dense share for a question whose keyword coverage is `coverage`:
    `adaptive_alpha_high` at no coverage, falling linearly to `adaptive_alpha_low` at
    `adaptive_full_coverage` and above."""
    share = min(1.0, max(0.0, coverage) / settings.adaptive_full_coverage)
    high, low = settings.adaptive_alpha_high, settings.adaptive_alpha_low
    return high - (high - low) * share


def rank_fusion(
    dense: Ranked, lexical: Ranked, k: int, dense_weight: float, lexical_weight: float
) -> list[ScoredChunk]:
    """Weighted reciprocal rank fusion: each list adds weight / (k + rank)."""
    by_id: dict[str, ScoredChunk] = {}
    for rank, (chunk, _) in enumerate(dense, start=1):
        hit = by_id.setdefault(chunk.chunk_id, ScoredChunk(chunk=chunk, score=0.0))
        hit.score += dense_weight / (k + rank)
        hit.dense_rank = rank
    for rank, (chunk, _) in enumerate(lexical, start=1):
        hit = by_id.setdefault(chunk.chunk_id, ScoredChunk(chunk=chunk, score=0.0))
        hit.score += lexical_weight / (k + rank)
        hit.lexical_rank = rank
    return _ordered(by_id)


def score_fusion(dense: Ranked, lexical: Ranked, alpha: float) -> list[ScoredChunk]:
    """alpha * scaled cosine + (1 - alpha) * scaled BM25; a chunk missing from one list
    scores 0 there (it ranked below every candidate that list returned)."""
    by_id: dict[str, ScoredChunk] = {}
    if dense:
        top, bottom = dense[0][1], dense[-1][1]
        spread = top - bottom
        for rank, (chunk, cos) in enumerate(dense, start=1):
            hit = by_id.setdefault(chunk.chunk_id, ScoredChunk(chunk=chunk, score=0.0))
            hit.score += alpha * ((cos - bottom) / spread if spread > 0 else 1.0)
            hit.dense_rank = rank
    if lexical:
        best = lexical[0][1]
        for rank, (chunk, bm25) in enumerate(lexical, start=1):
            hit = by_id.setdefault(chunk.chunk_id, ScoredChunk(chunk=chunk, score=0.0))
            hit.score += (1 - alpha) * (bm25 / best if best > 0 else 0.0)
            hit.lexical_rank = rank
    return _ordered(by_id)


def _ordered(by_id: dict[str, ScoredChunk]) -> list[ScoredChunk]:
    # Ties (a chunk ranked r by one list, another ranked r by the other) are broken by
    # chunk id, so the same question over the same index always ranks the same way.
    return sorted(by_id.values(), key=lambda h: (-h.score, h.chunk.chunk_id))
