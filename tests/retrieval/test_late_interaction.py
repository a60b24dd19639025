"""Late interaction: each question word matched with its most similar passage word."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from docqa.domain import Chunk
from docqa.errors import ConfigurationError
from docqa.settings import RetrievalSettings, load_settings
from retrieval.hybrid import HybridRetriever
from retrieval.late_interaction import content_word_spans, late_interaction
from tests.retrieval.test_fusion import WordShare


class OneHotWords:
    """`SentencePooling` where a word's vector is one axis per distinct word: two words
    match (cosine 1) only when they are the same word, so a passage's late-interaction
    match is the share of the question's content words it holds."""

    dimension = 64

    def embed_documents_pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        pooled = []
        for text, row_spans in zip(texts, spans, strict=True):
            rows = np.zeros((len(row_spans), self.dimension), dtype=np.float32)
            for i, (a, b) in enumerate(row_spans):
                rows[i, zlib.crc32(text[a:b].lower().encode()) % self.dimension] = 1.0
            pooled.append(rows)
        return np.zeros((len(texts), self.dimension), dtype=np.float32), pooled


def test_content_words_are_the_words_the_keyword_index_keeps():
    # bm25s's short English stopword list, and words of two characters or more.
    text = "Reset the router's VLAN 12 if it is down"
    assert [text[a:b] for a, b in content_word_spans(text)] == [
        "Reset",
        "router",
        "VLAN",
        "12",
        "down",
    ]
    assert content_word_spans("Is it on a...") == []


def test_a_passage_scores_the_share_of_question_words_it_matches():
    matches = late_interaction(
        OneHotWords(),
        "reset router password",
        ["To reset the router password, hold the button.", "The router blinks.", ""],
    )
    assert [m.score for m in matches] == pytest.approx([1.0, 1 / 3, 0.0])
    assert [len(m.sentences) for m in matches] == [1, 1, 0]


def test_each_sentence_scores_the_question_words_its_own_words_match():
    text = "The router blinks twice. Hold reset to clear the password.\nRouter password reset."
    (match,) = late_interaction(OneHotWords(), "reset router password", [text])
    assert match.score == pytest.approx(1.0)
    assert match.sentences.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_a_question_of_stopwords_only_scores_nothing():
    (match,) = late_interaction(OneHotWords(), "is it on", ["It is on. It was."])
    assert match.score == 0.0
    assert match.sentences.tolist() == [0.0, 0.0]
    assert late_interaction(OneHotWords(), "reset", []) == []


def _passage(cid: str, text: str) -> Chunk:
    return Chunk(cid, "d", text, 0, "s", "txt")


def test_late_interaction_lifts_the_passage_that_matches_word_by_word():
    topic = _passage("topic", "Routers are network devices sold in many shapes.")
    answer = _passage("answer", "Hold the reset button to restore the router password.")
    dense = [(topic, 0.9), (answer, 0.7), (_passage("z", "Unrelated text."), 0.1)]

    def ranked(weight: float) -> list[str]:
        settings = RetrievalSettings(
            fusion="score",
            score_alpha=1.0,
            sentence_weight=0.0,
            late_interaction_weight=weight,
            late_interaction_candidates=3,
        )
        retriever = HybridRetriever(OneHotWords(), WordShare(), WordShare(), settings)  # type: ignore[arg-type]
        retrieval = retriever.rank("reset router password", np.zeros(3), dense, [], top_k=2)
        if weight:
            assert "late_interaction" in retrieval.timings_ms
            assert all(h.sentence_matches is not None for h in retrieval.hits)
        return [h.chunk.chunk_id for h in retrieval.hits]

    assert ranked(0.0) == ["topic", "answer"]
    # The top 2 of 3 scored candidates: the cut to top_k comes after the reordering.
    assert ranked(2.0) == ["answer", "topic"]


def test_the_real_model_matches_a_paraphrase_above_a_passage_on_another_topic(embedder):
    matches = late_interaction(
        embedder,
        "How do I start the car?",
        [
            "To start the vehicle, press the ignition button with your foot on the brake.",
            "The museum opens at nine and closes at five on weekdays.",
        ],
    )
    assert matches[0].score > matches[1].score
    assert all(0.0 <= m.score <= 1.0 + 1e-6 for m in matches)


def test_an_embedder_without_word_outputs_is_refused_at_start(tmp_path):
    from retrieval.index import ServingRetriever

    class PlainEmbedder:
        model_id = "plain"

    settings = RetrievalSettings(late_interaction_weight=5.0)
    with pytest.raises(ConfigurationError, match=re.escape("LATE_INTERACTION_WEIGHT")):
        ServingRetriever(None, PlainEmbedder(), settings)  # type: ignore[arg-type]
    ServingRetriever(None, PlainEmbedder(), RetrievalSettings(late_interaction_weight=0))  # type: ignore[arg-type]


def test_late_interaction_is_on_by_default_and_skipped_for_an_embedder_without_word_outputs(
    monkeypatch, caplog
):
    from retrieval.index import ServingRetriever

    class PlainEmbedder:
        model_id = "plain"

    # Set through the environment, as a user would: refused.
    monkeypatch.setenv("DOCQA_RETRIEVAL__LATE_INTERACTION_WEIGHT", "5")
    with pytest.raises(ConfigurationError, match="PlainEmbedder"):
        ServingRetriever(None, PlainEmbedder(), load_settings().retrieval)  # type: ignore[arg-type]
    # Left at its default: on, and quietly off (with a warning) where it cannot run.
    monkeypatch.delenv("DOCQA_RETRIEVAL__LATE_INTERACTION_WEIGHT")
    monkeypatch.setenv("DOCQA_RETRIEVAL__TOP_K", "3")
    settings = load_settings().retrieval
    assert settings.late_interaction_weight > 0
    with caplog.at_level("WARNING", logger="retrieval.index"):
        ServingRetriever(None, PlainEmbedder(), settings)  # type: ignore[arg-type]
    assert "late interaction is off" in caplog.text
    # The ranking itself skips the stage for such an embedder.
    assert not HybridRetriever(PlainEmbedder(), WordShare(), WordShare(), settings).late  # type: ignore[arg-type]
    assert HybridRetriever(OneHotWords(), WordShare(), WordShare(), settings).late  # type: ignore[arg-type]
