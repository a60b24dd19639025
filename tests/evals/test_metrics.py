"""Metric functions against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from evals.metrics import (
    cited_sentences,
    contains_answer,
    exact_match,
    first_hit_rank,
    hit_at_k,
    ndcg_at_k,
    normalize_answer,
    reciprocal_rank,
    supported_sentences,
    token_f1,
)
from evals.results import QuestionResult, summarize


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Cat!", "cat"),
        ("  A  quick, brown fox. ", "quick brown fox"),
        ("an apple and THE pear", "apple and pear"),
        ("U.S.-based (2019)", "usbased 2019"),
        ("theatre", "theatre"),  # articles only as whole words
    ],
)
def test_squad_normalization(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert exact_match("the Denver Broncos.", ["Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert exact_match("Broncos", ["Denver Broncos", "Broncos"]) == 1.0


def test_token_f1_on_known_pairs() -> None:
    # 2 shared tokens of 3 each side: P = R = 2/3.
    assert token_f1("the quick brown fox", ["quick brown dog"]) == pytest.approx(2 / 3)
    # P = 1, R = 1/2 -> F1 = 2/3.
    assert token_f1("Broncos", ["Denver Broncos"]) == pytest.approx(2 / 3)
    # The best of several gold answers counts.
    assert token_f1("Broncos", ["Denver Broncos", "the Broncos"]) == 1.0
    assert token_f1("nothing in common", ["Denver Broncos"]) == 0.0
    # Repeated tokens count as often as they occur in both: P = 1/3, R = 1 -> 1/2.
    assert token_f1("yes yes yes", ["yes"]) == pytest.approx(0.5)


def test_contains_answer_uses_normalized_text() -> None:
    assert contains_answer("It was completed in 1873, by Brandt.", ["1873"])
    assert contains_answer("Led by THE engineer Ilse Brandt.", ["engineer, Ilse Brandt"])
    assert not contains_answer("completed in 1874", ["1873"])


def test_a_gold_span_cut_by_a_line_end_matches_the_joined_chunk() -> None:
    # COVID-QA copies spans from wrapped text; docqa's chunks join the cut words.
    assert contains_answer("had clinically apparent illnesses", ["had clinical-\nly apparent"])
    assert contains_answer("had clinical-\nly apparent illnesses", ["clinically apparent"])
    assert contains_answer("a well-known result", ["well-\nknown result"])


def test_a_gold_span_with_ligatures_matches_the_folded_chunk() -> None:
    # COVID-QA's spans keep a PDF's ligatures ("ﬂ", "ﬁ"); ingestion folds them (NFKC).
    gold = "Persons 65 years of age in 1918 had a high in\ufb02uenza incidence"
    chunk = "Persons 65 years of age in 1918 had a high influenza incidence."
    assert contains_answer(chunk, [gold])
    assert contains_answer("arterial oxygen tension (PaO2)", ["tension (PaO\u2082)"])
    assert exact_match("the \ufb01rst wave", ["first wave"]) == 1.0
    assert normalize_answer("\uff21\uff22\uff23 2019") == "abc 2019"  # full-width forms


def test_reciprocal_rank_and_hits_on_small_rankings() -> None:
    ranking = [False, False, True, False, True]
    assert first_hit_rank(ranking) == 3
    assert reciprocal_rank(ranking) == pytest.approx(1 / 3)
    assert hit_at_k(ranking, 1) == 0.0
    assert hit_at_k(ranking, 3) == 1.0
    assert reciprocal_rank([False] * 10 + [True], k=10) == 0.0
    assert reciprocal_rank([]) == 0.0


def test_ndcg_on_small_rankings() -> None:
    # Relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3).
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k([False, True, False, True]) == pytest.approx(dcg / ideal)
    assert ndcg_at_k([True, False, False]) == 1.0
    assert ndcg_at_k([False, False]) == 0.0


def test_citation_markers_belong_to_their_sentence() -> None:
    answer = "Bees nest in burrows. [1] They eat saxifrage [2, 3]. Unmarked claim."
    assert cited_sentences(answer) == [
        ("Bees nest in burrows.", [1]),
        ("They eat saxifrage .", [2, 3]),
        ("Unmarked claim.", []),
    ]


def test_groundedness_checks_each_sentence_against_what_it_cites() -> None:
    cited = ["The marbled bee nests in lemming burrows.", "Dogs bark at night."]
    # Supported by its citation; the second cites a chunk that does not say it.
    answer = "The marbled bee nests in lemming burrows. [1] The marbled bee flies at night. [2]"
    assert supported_sentences(answer, cited) == (1, 2)
    # A marker pointing at no citation supports nothing.
    assert supported_sentences("The marbled bee nests in lemming burrows. [7]", cited) == (0, 1)


def _result(qid: str, hit: int | None, **kw: object) -> QuestionResult:
    return QuestionResult(
        qid=qid,
        question=qid,
        answers=["x"],
        document="d",
        hit_rank=hit,
        doc_rank=hit,
        answered=True,
        **kw,
    )  # type: ignore[arg-type]


def test_summary_over_questions() -> None:
    results = [
        _result(
            "a",
            1,
            found=True,
            f1=1.0,
            exact_match=1.0,
            contains=True,
            sentences=2,
            supported_sentences=2,
            citations=1,
            correct_citations=1,
            timings_ms={"retrieve": 10.0, "generate": 20.0, "total": 30.0},
        ),
        _result(
            "b",
            4,
            found=True,
            f1=0.5,
            contains=False,
            sentences=2,
            supported_sentences=1,
            citations=2,
            correct_citations=1,
            timings_ms={"retrieve": 30.0, "generate": 40.0, "total": 70.0},
        ),
        _result(
            "c", None, found=False, timings_ms={"retrieve": 20.0, "generate": 0.0, "total": 20.0}
        ),
    ]
    m = summarize(results)
    assert m["hit@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["hit@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["mrr@10"] == pytest.approx((1 + 0.25) / 3, abs=1e-4)
    assert m["f1"] == pytest.approx(0.5)
    assert m["exact_match"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["not_found_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["groundedness"] == pytest.approx(3 / 4)
    assert m["citation_precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["retrieve_ms_p50"] == 20.0
    assert "prompt_tokens_mean" not in m  # no model, no tokens


def test_unanswerable_questions_count_only_as_wrongly_answered() -> None:
    results = [
        _result("a", 1, found=True, contains=True),
        _result("b", None, found=False),
        _result("u1", None, found=True, unanswerable=True),
        _result("u2", None, found=False, unanswerable=True),
        _result("u3", None, found=True, unanswerable=True),
    ]
    m = summarize(results)
    assert m["hit@1"] == pytest.approx(0.5)  # over the answerable questions only
    assert m["answer_contains"] == pytest.approx(0.5)
    assert m["wrongly_refused"] == pytest.approx(0.5)
    assert m["wrongly_answered"] == pytest.approx(2 / 3, abs=1e-4)
    only = summarize(results[2:])
    assert only == {"wrongly_answered": pytest.approx(2 / 3, abs=1e-4)}
