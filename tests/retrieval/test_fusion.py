"""Fusion methods: each merges the two rankings as its setting says."""

from __future__ import annotations

import re

import pytest

from docqa.domain import Chunk
from docqa.settings import RetrievalSettings
from retrieval.fusion import adaptive_alpha, fuse
from retrieval.hybrid import agreement


def chunk(cid: str) -> Chunk:
    return Chunk(cid, "d", f"text {cid}", 0, "s", "txt")


# The dense ranking prefers a, the keyword ranking prefers b; c is second in both.
DENSE = [(chunk("a"), 0.80), (chunk("c"), 0.60), (chunk("d"), 0.20)]
LEXICAL = [(chunk("b"), 30.0), (chunk("c"), 12.0), (chunk("e"), 3.0)]


def order(method: str, coverage: float = 1.0, **settings: float) -> list[str]:
    fused = fuse(DENSE, LEXICAL, RetrievalSettings(fusion=method, **settings), coverage)
    return [h.chunk.chunk_id for h in fused]


def before(first: str, second: str, ranking: list[str]) -> bool:
    return ranking.index(first) < ranking.index(second)


def test_weighted_fusion_lets_the_heavier_ranking_lead():
    assert before("b", "a", order("weighted", lexical_weight=1.5))
    assert before("a", "b", order("weighted", lexical_weight=0.5))


def test_rrf_puts_the_passage_both_rankings_hold_first():
    assert order("rrf", rrf_k=1)[0] == "c"


def test_score_fusion_follows_alpha():
    assert order("score", score_alpha=0.9)[0] == "a"
    assert order("score", score_alpha=0.1)[0] == "b"


def test_adaptive_fusion_follows_the_keyword_coverage_of_the_question():
    shares = {"adaptive_alpha_low": 0.1, "adaptive_alpha_high": 0.9}
    # A question whose words the documents use: BM25 weighs more and leads.
    assert before("b", "a", order("adaptive", coverage=1.0, **shares))
    # One asked in other words: the dense ranking leads.
    assert before("a", "b", order("adaptive", coverage=0.0, **shares))


@pytest.mark.parametrize(("coverage", "alpha"), [(0.0, 0.8), (0.45, 0.6), (0.9, 0.4), (1.0, 0.4)])
def test_adaptive_cosine_share_falls_linearly_to_full_coverage(coverage, alpha):
    settings = RetrievalSettings(
        adaptive_alpha_low=0.4, adaptive_alpha_high=0.8, adaptive_full_coverage=0.9
    )
    assert adaptive_alpha(coverage, settings) == pytest.approx(alpha)


def test_every_fused_hit_keeps_its_rank_in_each_list():
    fused = {h.chunk.chunk_id: h for h in fuse(DENSE, LEXICAL, RetrievalSettings(fusion="rrf"))}
    assert (fused["c"].dense_rank, fused["c"].lexical_rank) == (2, 2)
    assert (fused["a"].dense_rank, fused["a"].lexical_rank) == (1, None)
    assert agreement([fused["c"]]) == pytest.approx(0.5)
    assert agreement([fused["a"]]) == 0.0


def test_fusion_of_empty_lists_is_empty():
    for method in ("weighted", "rrf", "score", "adaptive"):
        assert fuse([], [], RetrievalSettings(fusion=method)) == []


class WordShare:
    """Keyword coverage as the plain share of the question's words a text holds."""

    def coverage(self, query: str, texts):
        words = set(re.findall(r"\w+", query.lower()))
        return [len(words & set(re.findall(r"\w+", t.lower()))) / len(words) for t in texts]

    def embeddings(self, chunk_ids):
        return {}


def test_a_passage_whose_one_sentence_holds_the_question_words_moves_up():
    import numpy as np

    from retrieval.hybrid import HybridRetriever

    scattered = Chunk("a", "d", "The vaccine was tested.\nMice were used.\nIt worked.", 0, "s", "t")
    together = Chunk("b", "d", "Other words here.\nThe vaccine was tested in mice.", 1, "s", "t")
    dense = [(scattered, 0.9), (together, 0.8), (chunk("z"), 0.1)]
    settings = RetrievalSettings(fusion="score", score_alpha=1.0, sentence_weight=1.0)
    retriever = HybridRetriever(None, WordShare(), WordShare(), settings)  # type: ignore[arg-type]
    ranked = retriever.rank("vaccine tested mice", np.zeros(3), dense, [], top_k=3).hits
    assert [h.chunk.chunk_id for h in ranked][:2] == ["b", "a"]
    off = RetrievalSettings(fusion="score", score_alpha=1.0, sentence_weight=0.0)
    retriever = HybridRetriever(None, WordShare(), WordShare(), off)  # type: ignore[arg-type]
    ranked = retriever.rank("vaccine tested mice", np.zeros(3), dense, [], top_k=3).hits
    assert [h.chunk.chunk_id for h in ranked][:2] == ["a", "b"]


class KeptSentences:
    """A sentence-vector store over fixed rows, counting the chunk ids it is asked for."""

    def __init__(self, rows):
        self.rows, self.asked = rows, []

    def get(self, chunk_ids):
        self.asked.append(list(chunk_ids))
        return {c: self.rows[c] for c in chunk_ids if c in self.rows}


def test_a_passage_whose_kept_sentence_means_the_question_moves_up():
    import numpy as np

    from retrieval.hybrid import HybridRetriever

    q = np.array([1.0, 0.0, 0.0])
    dense = [(chunk("a"), 0.9), (chunk("b"), 0.8), (chunk("z"), 0.1)]
    # b's second sentence says what the question asks; a's sentences do not; z has none kept.
    store = KeptSentences(
        {
            "a": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
            "b": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
        }
    )
    on = RetrievalSettings(fusion="score", score_alpha=1.0, sentence_weight=0.0)
    retriever = HybridRetriever(None, WordShare(), WordShare(), on, sentences=store)  # type: ignore[arg-type]
    ranked = retriever.rank("question", q, dense, [], top_k=3).hits
    assert [h.chunk.chunk_id for h in ranked] == ["b", "a", "z"]
    # The hits carry their kept vectors for the answerer, read once with the fusion's.
    assert ranked[0].sentence_vectors is store.rows["b"]
    assert ranked[2].sentence_vectors is None
    assert store.asked == [["a", "b", "z"]]

    off = on.model_copy(update={"sentence_vector_weight": 0.0})
    store.asked.clear()
    retriever = HybridRetriever(None, WordShare(), WordShare(), off, sentences=store)  # type: ignore[arg-type]
    ranked = retriever.rank("question", q, dense, [], top_k=2).hits
    assert [h.chunk.chunk_id for h in ranked] == ["a", "b"]
    assert ranked[1].sentence_vectors is store.rows["b"]
    assert store.asked == [["a", "b"]]  # only the hits' vectors, for the answerer
