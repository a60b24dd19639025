"""The incremental keyword index: same ranking as bm25s, writes applied without a rebuild,
in this process and in others, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from docqa.domain import Chunk
from retrieval import lexical
from retrieval.lexical import Analyzer, BM25Index, Postings
from retrieval.protocols import SearchFilters

ROOT = Path(__file__).resolve().parents[2]
WORDS = (
    "virus cell protein infection patient vaccine immune response receptor binding spike "
    "genome sequence mutation antibody clinical trial dose fever cough lung tissue sample "
    "assay culture strain host replication transmission outbreak case study cohort"
).split()


def _chunk(cid: str, text: str, source: str = "a.txt", file_type: str = "txt") -> Chunk:
    return Chunk(
        chunk_id=cid,
        document_id=f"doc_{source}",
        text=text,
        position=0,
        source=source,
        file_type=file_type,
    )


def _corpus(n: int, seed: int = 7) -> list[Chunk]:
    rnd = random.Random(seed)
    return [
        _chunk(f"c{i:04d}", " ".join(rnd.choices(WORDS, k=rnd.randint(5, 60))), f"s{i % 5}.txt")
        for i in range(n)
    ]


def test_ranking_and_scores_match_bm25s_on_the_same_corpus():
    import bm25s
    import Stemmer

    chunks = _corpus(300)
    analyzer = Analyzer()
    postings = Postings()
    for c in chunks:
        postings.add(c.chunk_id, analyzer.terms(c.text), c.metadata())
    reference = bm25s.BM25()
    stemmer = Stemmer.Stemmer("english")
    reference.index(
        bm25s.tokenize([c.text for c in chunks], stopwords="en", stemmer=stemmer),
        show_progress=False,
    )
    for query in ("spike protein binding", "fever and cough in the cohort", "vaccine dose"):
        ours = postings.search(analyzer.terms(query), 10, None)
        q = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, return_ids=False)
        docs, scores = reference.retrieve(q, k=10, show_progress=False)
        np.testing.assert_allclose([s for _, s in ours], scores[0], rtol=1e-5)
        assert {cid for cid, _ in ours} == {chunks[int(i)].chunk_id for i in docs[0]} or (
            # equal scores at the cut may pick different chunks
            len({round(s, 5) for _, s in ours}) < len(ours)
        )


def test_merging_segments_changes_no_score():
    chunks = _corpus(200)
    analyzer = Analyzer()
    postings = Postings()
    for c in chunks[:150]:
        postings.add(c.chunk_id, analyzer.terms(c.text), c.metadata())
    postings.merge()
    for c in chunks[150:]:
        postings.add(c.chunk_id, analyzer.terms(c.text), c.metadata())
    for c in chunks[:40]:
        postings.remove(c.chunk_id)
    postings.add("c0100", analyzer.terms("replication replication replication"), {})
    filters = SearchFilters(sources=["s1.txt", "s3.txt"])
    terms = analyzer.terms("replication of the virus in host cell culture")
    before = postings.search(terms, 20, None), postings.search(terms, 20, filters)
    postings.merge()
    after = postings.search(terms, 20, None), postings.search(terms, 20, filters)
    assert before == after
    # Counted in bulk, the same live chunks score the same.
    bulk = Postings()
    live = [c for c in chunks[40:] if c.chunk_id != "c0100"]
    bulk.add_many([(c.chunk_id, analyzer.terms(c.text), c.metadata()) for c in live])
    bulk.add_many([("c0100", analyzer.terms("replication replication replication"), {})])
    assert bulk.needs_merge()
    bulk.merge()
    assert sorted(bulk.search(terms, 20, None)) == sorted(after[0])
    assert postings.search(analyzer.terms("replication"), 1, None)[0][0] == "c0100"
    assert all(cid >= "c0040" for cid, _ in before[0])


def test_search_reflects_upserts_and_deletes_without_rebuilding(tmp_path, monkeypatch):
    index = BM25Index(f"sqlite:///{tmp_path / 'db.sqlite'}", "col", tmp_path / "bm25")
    index.upsert(_corpus(50))
    assert index.search("spike protein", 3)
    built = index._postings
    index.upsert([_chunk("new", "zebrafish model of influenza")])
    assert index.search("zebrafish", 3)[0][0].chunk_id == "new"
    index.upsert([_chunk("new", "a ferret model this time")])
    assert index.search("zebrafish", 3) == []
    assert index.search("ferret", 3)[0][0].text == "a ferret model this time"
    index.delete(["new"])
    assert index.search("ferret", 3) == []
    assert index._postings is built  # the same in-memory index, changed in place


def test_a_restart_loads_the_saved_index_and_applies_later_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(lexical, "_MERGE_MIN", 10)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = BM25Index(url, "col", tmp_path / "bm25")
    first.upsert(_corpus(100))
    expected = first.search("antibody assay", 5)
    assert (tmp_path / "bm25" / "col" / "snapshot" / "header.json").exists()
    first.delete([expected[0][0].chunk_id])

    restarted = BM25Index(url, "col", tmp_path / "bm25")
    calls: list[int] = []
    original = restarted._add_rows
    monkeypatch.setattr(
        restarted, "_add_rows", lambda p, rows: calls.append(len(rows)) or original(p, rows)
    )
    found = restarted.search("antibody assay", 5)
    assert [c.chunk_id for c, _ in found] == [
        c.chunk_id for c, _ in first.search("antibody assay", 5)
    ]
    assert expected[0][0].chunk_id not in {c.chunk_id for c, _ in found}
    assert sum(calls) == 0  # loaded from the snapshot: nothing tokenised again


WRITER = textwrap.dedent(
    """
    import sys
    from docqa.domain import Chunk
    from retrieval.lexical import BM25Index

    url, collection, action, word = sys.argv[1:5]
    index = BM25Index(url, collection)
    if action == "add":
        index.upsert([Chunk(chunk_id="other-process", document_id="doc_x", text=word,
                            position=0, source="x.txt", file_type="txt")])
    else:
        index.delete(["other-process"])
    """
)


def _in_another_process(url: str, collection: str, action: str, word: str) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER, url, collection, action, word],
        cwd=ROOT,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite'}"
    return request.getfixturevalue("pg_url")


def test_a_write_in_another_process_is_found_by_the_next_search(database_url, tmp_path):
    collection = f"xproc-{uuid.uuid4().hex[:8]}"
    reader = BM25Index(database_url, collection, tmp_path / "bm25")
    try:
        reader.upsert(_corpus(30))
        assert reader.search("hamster", 3) == []  # the reader's index is built now
        built = reader._postings

        _in_another_process(database_url, collection, "add", "hamster challenge model")
        hits = reader.search("hamster", 3)
        assert [c.chunk_id for c, _ in hits] == ["other-process"]
        assert reader._postings is built and built.generation == reader.generation()

        _in_another_process(database_url, collection, "delete", "")
        assert reader.search("hamster", 3) == []
    finally:
        reader.drop()


def test_coverage_weighs_the_question_words_a_text_holds_by_their_rarity(tmp_path):
    index = BM25Index(f"sqlite:///{tmp_path / 'db.sqlite'}", "col")
    assert index.coverage("spike protein", ["spike protein"]) == [0.0]  # empty index
    index.upsert([*_corpus(40), _chunk("rare", "the zebrafish model")])
    full, rare, common, none = index.coverage(
        "zebrafish virus", ["zebrafish virus", "a zebrafish", "a virus", "nothing here"]
    )
    assert full == pytest.approx(1.0)
    assert rare > 0.5 > common > 0.0
    assert none == 0.0
