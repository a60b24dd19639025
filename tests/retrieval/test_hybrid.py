"""Hybrid retrieval: both rankings contribute, filters hold, near-duplicates collapse."""

from __future__ import annotations

import pytest

from docqa.domain import Chunk, ScoredChunk
from retrieval.hybrid import collapse_near_duplicates
from retrieval.protocols import SearchFilters
from tests.documents import write_corpus


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder):
    from app import Docqa
    from docqa.settings import load_settings

    folder = tmp_path_factory.mktemp("hybrid")
    files = write_corpus(folder / "docs")
    dup = folder / "docs" / "notes-copy.md"
    dup.write_text(files["md"].read_text())
    dq = Docqa(load_settings(data_dir=folder / "data"), embedder=embedder)
    dq.indexer().ingest_paths(sorted((folder / "docs").iterdir()))
    return dq, files


def test_keyword_only_question_is_found_through_bm25(indexed):
    dq, _ = indexed
    hits = dq.retriever.retrieve("Strandgade 93").hits
    assert "Strandgade" in hits[0].chunk.text
    assert hits[0].lexical_rank == 1


def test_paraphrase_is_found_through_embeddings(indexed):
    dq, _ = indexed
    hits = dq.retriever.retrieve("how much time off do workers get annually").hits
    assert "paid holiday" in hits[0].chunk.text
    assert hits[0].dense_rank is not None


def test_every_hit_has_a_cosine_relevance(indexed):
    dq, _ = indexed
    hits = dq.retriever.retrieve("garage parking visitors", top_k=8).hits
    assert all(h.relevance is not None and -1 <= h.relevance <= 1 for h in hits)


def test_filters_restrict_both_rankings(indexed):
    dq, files = indexed
    only_pptx = dq.retriever.retrieve("release", filters=SearchFilters(file_types=["pptx"])).hits
    assert only_pptx and {h.chunk.file_type for h in only_pptx} == {"pptx"}
    source = str(files["docx"].resolve())
    only_doc = dq.retriever.retrieve("holiday days", filters=SearchFilters(sources=[source])).hits
    assert only_doc and {h.chunk.source for h in only_doc} == {source}


def test_identical_passages_in_two_files_appear_once(indexed):
    dq, _ = indexed
    hits = dq.retriever.retrieve("Where is the Copenhagen office located?", top_k=5).hits
    assert sum("Strandgade" in h.chunk.text for h in hits) == 1


def test_collapse_keeps_the_better_ranked_of_near_duplicates():
    def hit(cid: str, text: str, score: float) -> ScoredChunk:
        return ScoredChunk(Chunk(cid, "d", text, 0, "s", "txt"), score)

    text = "the quick brown fox jumps over the lazy dog near the river bank today"
    ranked = [hit("1", text, 3), hit("2", text + " indeed", 2), hit("3", "unrelated words here", 1)]
    assert [h.chunk.chunk_id for h in collapse_near_duplicates(ranked, 5, 0.8)] == ["1", "3"]


def test_keyword_coverage_is_the_idf_weighted_share_of_the_question_terms(indexed):
    dq, _ = indexed
    lexical = dq.indexes.current().lexical
    one, other, both, every = lexical.coverage(
        "Strandgade holiday days",
        ["Strandgade", "days", "Strandgade days", "27 days of paid holiday at Strandgade"],
    )
    assert 0 < one < 1 and 0 < other < 1
    assert both == pytest.approx(one + other)
    assert every == pytest.approx(1.0)
    assert lexical.coverage("Strandgade", ["Strandgade 93", "nothing"]) == [1.0, 0.0]
    # A word no document uses counts against the match.
    assert lexical.coverage("Strandgade qwertyuiop", ["Strandgade"])[0] < 0.6


def test_every_retrieval_reports_its_not_found_signals(indexed):
    dq, _ = indexed
    result = dq.retriever.retrieve("Where is the Copenhagen office located?")
    assert 0 < result.signals["coverage"] <= 1
    assert 0 <= result.signals["agreement"] <= 1
