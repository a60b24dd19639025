"""Zero-downtime re-index: queries keep being answered from the old collection while a
rebuild runs and from the new one after the switch; a failed rebuild leaves the serving
collection as it was; the old collection goes only after its grace period."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from docqa.errors import IndexMismatchError
from ingestion.reindex import ReindexError
from retrieval.lexical import BM25Index

TEXTS = {
    "leave.md": "# Leave\n\nStaff get 27 days of paid leave a year, booked through the portal. "
    "Unused days carry over until the end of March and are then lost.\n",
    "trains.txt": "Second-class rail tickets are reimbursed for trips under four hours; "
    "first class only for longer journeys approved by a manager.\n",
    "hotels.txt": "Hotel nights are reimbursed up to 140 euros in capital cities and 100 "
    "euros elsewhere, breakfast included.\n",
    "badges.md": "# Badges\n\nLost badges are reported to the front desk within a day; a "
    "replacement costs 15 euros after the second loss.\n",
}
QUESTIONS = ["how many days of paid leave", "hotel night reimbursement", "lost badge"]
SMALLER_CHUNKS = {"chunk_tokens": 64, "overlap_tokens": 8}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in TEXTS.items():
        (root / name).write_text(text)
    return root


@pytest.fixture
def indexed(make_docqa, corpus):
    dq = make_docqa()
    dq.indexer().ingest_paths(sorted(corpus.iterdir()))
    return dq


def serving_state(dq) -> tuple[str, set[str], set[str]]:
    index = dq.indexes.current()
    return index.collection, set(index.vectors.ids()), set(index.lexical.ids())


def collections(dq) -> set[str]:
    return {c.name for c in dq.indexes.chroma.list_collections()}


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the query thread stopped answering"
        time.sleep(0.05)


class Paused:
    """An on_progress hook that stops the rebuild after its first document until released."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, done: int, total: int, source: str) -> None:
        if done == 1:
            self.reached.set()
            assert self.release.wait(60), "the test never released the rebuild"
            if self.fail:
                raise self.fail


def test_queries_answer_from_the_old_collection_until_the_switch(
    make_docqa, make_settings, indexed
):
    old_collection, old_ids, _ = serving_state(indexed)
    rebuilder = make_docqa(make_settings(chunking=SMALLER_CHUNKS))
    with pytest.raises(IndexMismatchError):
        rebuilder.indexer()  # the settings changed: writing needs a rebuild first
    reader = make_docqa()  # another process's view, e.g. the API's
    answers: list[tuple[float, str, set[str]]] = []
    stop = threading.Event()

    def ask_all_the_time() -> None:
        while not stop.is_set():
            for q in QUESTIONS:
                hits = reader.retriever.retrieve(q).hits
                answers.append((time.monotonic(), reader.indexes.current().collection, hits))

    hook = Paused()
    outcome: dict[str, object] = {}
    builder = threading.Thread(
        target=lambda: outcome.setdefault("report", rebuilder.reindexer().rebuild(on_progress=hook))
    )
    querier = threading.Thread(target=ask_all_the_time)
    querier.start()
    builder.start()
    assert hook.reached.wait(60)
    paused_at = len(answers)
    wait_for(lambda: len(answers) >= paused_at + len(QUESTIONS) * 2)  # queries while paused
    hook.release.set()
    builder.join(120)
    switched = len(answers)
    wait_for(lambda: len(answers) >= switched + len(QUESTIONS) * 2)
    stop.set()
    querier.join(60)

    report = outcome["report"]
    new_collection, new_ids, new_lexical = serving_state(reader)
    assert new_collection == report.new_collection != old_collection
    assert new_ids == new_lexical == indexed.records.all_chunk_ids()
    assert not new_ids & old_ids  # smaller chunks: new ids
    assert report.documents == report.reparsed == 4 and report.smoke_passed == 3
    # Every query was answered, each wholly from one collection: the old one until the
    # switch, the new one after; never a mix, never nothing.
    seen = []
    for _, _, hits in answers:
        ids = {h.chunk.chunk_id for h in hits}
        assert hits and (ids <= old_ids or ids <= new_ids)
        seen.append("old" if ids <= old_ids else "new")
    assert seen[: paused_at + len(QUESTIONS) * 2] == ["old"] * (paused_at + len(QUESTIONS) * 2)
    assert seen[-len(QUESTIONS) :] == ["new"] * len(QUESTIONS)
    assert "old" not in seen[seen.index("new") :]
    rebuilder.indexer()  # settings and index agree again
    assert old_collection in collections(reader)  # kept for the grace period


def test_a_rebuild_that_fails_leaves_the_serving_collection_as_it_was(indexed, make_docqa):
    before = serving_state(indexed)
    hits_before = [
        [h.chunk.chunk_id for h in indexed.retriever.retrieve(q).hits] for q in QUESTIONS
    ]
    records_before = {r.document_id: r.chunk_ids for r in indexed.records.list()}
    hook = Paused(fail=RuntimeError("the embedding server went away"))
    hook.release.set()

    with pytest.raises(RuntimeError, match="went away"):
        make_docqa().reindexer().rebuild(on_progress=hook)

    assert serving_state(indexed) == before
    assert collections(indexed) == {before[0]}  # the half-built collection was dropped
    assert {r.document_id: r.chunk_ids for r in indexed.records.list()} == records_before
    assert [
        [h.chunk.chunk_id for h in indexed.retriever.retrieve(q).hits] for q in QUESTIONS
    ] == hits_before


def test_a_rebuild_that_cannot_verify_refuses_to_switch(indexed, corpus):
    lost = next(r for r in indexed.records.list() if r.source.endswith("hotels.txt"))
    Path(lost.source).unlink()  # the original is gone ...
    index = indexed.indexes.current()
    index.vectors.delete(lost.chunk_ids)  # ... and so are its vectors: nothing to carry
    before = serving_state(indexed)
    tables = collections(indexed)

    with pytest.raises(ReindexError, match="cannot be carried over"):
        indexed.reindexer().rebuild()

    assert serving_state(indexed) == before
    assert collections(indexed) == tables
    leftovers = [
        name
        for name in lexical_collections(indexed)
        if name not in tables  # no keyword index of the dropped rebuild remains
    ]
    assert leftovers == []


def lexical_collections(dq) -> set[str]:
    from sqlalchemy import select

    from retrieval.lexical import lexical_chunks

    with dq.records.engine.connect() as conn:
        return {r[0] for r in conn.execute(select(lexical_chunks.c.collection).distinct())}


def test_a_document_whose_original_is_gone_is_carried_over(indexed, corpus):
    (corpus / "badges.md").unlink()
    report = indexed.reindexer().rebuild()
    assert (report.reparsed, report.carried_over) == (3, 1)
    assert report.carried[0]["why"] == "its original is gone"
    hits = indexed.retriever.retrieve("lost badge front desk").hits
    assert hits[0].chunk.source.endswith("badges.md")


def test_writes_during_the_rebuild_are_caught_up(indexed, make_docqa, corpus, tmp_path):
    hook = Paused()
    writer = make_docqa()
    outcome: dict[str, object] = {}
    builder = threading.Thread(
        target=lambda: outcome.setdefault(
            "report", make_docqa().reindexer().rebuild(on_progress=hook)
        )
    )
    builder.start()
    assert hook.reached.wait(60)
    extra = tmp_path / "parking.txt"
    extra.write_text("Parking permits are issued by facilities for a yearly fee of 80 euros.\n")
    writer.indexer().ingest_file(extra)
    gone = next(r for r in writer.records.list() if r.source.endswith("trains.txt"))
    writer.indexer().delete_document(gone.document_id)
    hook.release.set()
    builder.join(120)

    report = outcome["report"]
    assert report.caught_up + report.reconciled >= 2
    name, vectors, lexical = serving_state(indexed)
    assert name == report.new_collection
    assert vectors == lexical == indexed.records.all_chunk_ids()
    assert {Path(r.source).name for r in indexed.records.list()} == {
        "leave.md",
        "hotels.txt",
        "badges.md",
        "parking.txt",
    }
    assert (
        indexed.retriever.retrieve("parking permit fee")
        .hits[0]
        .chunk.source.endswith("parking.txt")
    )


def test_the_old_collection_is_dropped_only_after_the_grace_period(indexed):
    old = indexed.indexes.current().collection
    report = indexed.reindexer().rebuild()

    assert indexed.reindexer().retire_old(grace_s=900) == []
    assert old in collections(indexed)
    old_bm25 = BM25Index(
        indexed.settings.resolved_database_url, old, indexed.settings.data_dir / "bm25"
    )
    assert old_bm25.ids()

    assert indexed.reindexer().retire_old(grace_s=0) == [old]
    assert collections(indexed) == {report.new_collection}
    assert old_bm25.ids() == [] and old not in lexical_collections(indexed)
    assert indexed.retriever.retrieve("hotel night reimbursement").hits


def test_cli_reindex_prints_what_it_did(indexed):
    runner = CliRunner()
    data = str(indexed.settings.data_dir)
    old = indexed.indexes.current().collection

    result = runner.invoke(app, ["--data-dir", data, "reindex"])
    assert result.exit_code == 0, result.output
    assert "rebuilt 4 documents" in result.stdout and "4 re-parsed" in result.stdout
    assert "smoke queries: 3/3" in result.stdout
    assert f"(was {old})" in result.stdout
    assert re.search(r"previous collection is kept \d+ s more", result.stdout)

    retired = runner.invoke(app, ["--data-dir", data, "reindex", "--retire-only", "--grace-s", "0"])
    assert retired.exit_code == 0 and f"dropped: {old}" in retired.stdout


def test_two_processes_creating_the_first_collection_at_once_write_to_one(dq):
    """Both found no collection; the other recorded its own first. This one must write
    where the alias points, not into a collection of its own that nothing reads."""
    theirs = dq.indexes.current().collection
    dq.indexes._serving = None  # this process read "no collection" before theirs existed
    mine = dq.indexes._serving_index(None)
    assert mine.collection == theirs == dq.indexes.serving_name()
    assert collections(dq) == {theirs}  # the candidate this process made is gone
    assert dq.indexes.aliases.set_first(dq.indexes.alias, "other") == theirs
