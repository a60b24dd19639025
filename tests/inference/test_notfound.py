"""The not-found decision: one cosine as before, or the evidence of several signals."""

from __future__ import annotations

import numpy as np

from docqa.domain import Chunk, ScoredChunk
from docqa.settings import AnswerSettings
from inference.notfound import evidence, worth_answering
from retrieval.protocols import Retrieval


def found(nearest: float, **signals: float) -> Retrieval:
    hit = ScoredChunk(Chunk("c", "d", "text", 0, "s", "txt"), 1.0, relevance=nearest)
    return Retrieval([hit], np.zeros(3), nearest=nearest, signals=signals)


def test_cosine_rule_answers_from_min_relevance_up():
    settings = AnswerSettings(not_found="cosine", min_relevance=0.34)
    assert worth_answering(found(0.35), settings)
    assert not worth_answering(found(0.33), settings)


def test_no_passages_is_never_worth_answering():
    empty = Retrieval([], np.zeros(3), nearest=0.9, signals={"coverage": 1.0})
    assert not worth_answering(empty, AnswerSettings(not_found="evidence"))
    assert not worth_answering(empty, AnswerSettings(not_found="cosine"))


def test_evidence_rises_with_the_cosine_and_the_sentence_match():
    base = {"coverage": 0.3, "sentence": 0.3, "agreement": 0.0}
    low = evidence(found(0.3, **base))
    assert evidence(found(0.5, **base)) > low
    assert evidence(found(0.3, **{**base, "sentence": 0.9})) > low
    assert 0 < low < 1


def test_a_question_whose_words_the_passages_hold_is_answered_at_a_lower_cosine():
    settings = AnswerSettings(not_found="evidence")
    strong_words = found(0.3, coverage=1.0, sentence=1.0, agreement=1.0)
    nothing = found(0.1, coverage=0.0, sentence=0.0, agreement=0.0)
    assert worth_answering(strong_words, settings)
    assert not worth_answering(nothing, settings)


def test_a_low_reranker_score_refuses_when_a_minimum_is_set():
    strong = {"coverage": 1.0, "sentence": 1.0, "agreement": 1.0}
    settings = AnswerSettings(not_found="evidence", min_rerank_score=0.5)
    assert not worth_answering(found(0.8, rerank=0.2, **strong), settings)
    assert worth_answering(found(0.8, rerank=0.9, **strong), settings)
    # Without a minimum the reranker's score does not decide.
    assert worth_answering(found(0.8, rerank=0.2, **strong), AnswerSettings(not_found="evidence"))
