"""Indexing journal: re-ingest is idempotent, changes replace, deletes remove, and a
process killed mid-document leaves a state the next run repairs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docqa.domain import DocumentStatus, IngestOutcome
from docqa.errors import NotFoundError
from tests.documents import write_docx

ROOT = Path(__file__).resolve().parents[2]


def _state(dq):
    """Chunk ids in each store and in the records: the three must agree."""
    index = dq.indexes.current()
    recorded = set()
    for r in dq.records.list():
        recorded.update(r.chunk_ids)
    return set(index.vectors.ids()), set(index.lexical.ids()), recorded


def _assert_consistent(dq):
    vectors, lexical, recorded = _state(dq)
    assert vectors == lexical == recorded
    return vectors


def test_reingest_of_unchanged_file_adds_nothing(dq, tmp_path):
    doc = tmp_path / "policy.md"
    doc.write_text("# Leave\n\nStaff get 27 days of leave a year.\n")
    first = dq.indexer().ingest_file(doc)
    before = _assert_consistent(dq)
    second = dq.indexer().ingest_file(doc)
    assert first.outcome == IngestOutcome.ADDED
    assert second.outcome == IngestOutcome.UNCHANGED
    assert _assert_consistent(dq) == before


def test_changed_file_replaces_its_chunks_without_orphans(dq, tmp_path):
    doc = tmp_path / "policy.md"
    doc.write_text("# Leave\n\nStaff get 27 days of leave a year.\n")
    dq.indexer().ingest_file(doc)
    old = _assert_consistent(dq)
    doc.write_text("# Leave\n\nStaff get 30 days of leave a year from 2025 on.\n")
    result = dq.indexer().ingest_file(doc)
    new = _assert_consistent(dq)
    assert result.outcome == IngestOutcome.UPDATED
    assert not old & new
    texts = " ".join(c.text for c in dq.indexes.current().vectors.get(list(new)))
    assert "30 days" in texts and "27 days" not in texts


def test_deleted_document_is_gone_from_every_store(dq, tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("# Parking\n\nVisitors park in garage B.\n")
    keep = tmp_path / "b.md"
    keep.write_text("# Canteen\n\nLunch is served from noon.\n")
    result = dq.indexer().ingest_file(doc)
    dq.indexer().ingest_file(keep)
    removed = dq.indexer().delete_document(result.document_id)
    assert removed >= 1
    assert dq.records.get(result.document_id) is None
    remaining = _assert_consistent(dq)
    assert remaining and all(not i.startswith(result.document_id) for i in remaining)
    assert all(
        "garage" not in h.chunk.text for h in dq.retriever.retrieve("where do visitors park").hits
    )
    with pytest.raises(NotFoundError):
        dq.indexer().delete_document(result.document_id)


def test_a_failed_new_version_keeps_the_indexed_one_searchable(dq, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("The vault code is kept by the facilities manager.")
    dq.indexer().ingest_file(doc)
    doc.write_text("   \n  ")
    result = dq.indexer().ingest_file(doc)
    assert result.outcome == IngestOutcome.FAILED and result.reason == "empty"
    record = dq.records.get(result.document_id)
    assert record.status == DocumentStatus.FAILED and record.chunk_count == 1
    assert "vault" in dq.retriever.retrieve("who keeps the vault code").hits[0].chunk.text


def test_structured_files_keep_page_and_section_on_chunks(dq, tmp_path):
    path = write_docx(tmp_path / "h.docx", {"Expenses": ["Receipts are needed for taxis."]})
    dq.indexer().ingest_file(path)
    hit = dq.retriever.retrieve("do I need receipts for a taxi").hits[0]
    assert hit.chunk.section == "Expenses"
    assert hit.chunk.source == str(path.resolve())


CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from app import Docqa
    from docqa.settings import load_settings

    dq = Docqa(load_settings(data_dir=Path(sys.argv[1])))
    indexer = dq.indexer()
    step = sys.argv[3]
    real = indexer.index.vectors.upsert if step == "upsert" else indexer.index.vectors.delete

    def die_after(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup, no finally

    setattr(indexer.index.vectors, step, die_after)
    indexer.ingest_file(Path(sys.argv[2]))
    """
)


@pytest.mark.parametrize("step", ["upsert", "delete"])
def test_kill_9_mid_document_is_repaired_by_the_next_run(make_docqa, tmp_path, step):
    """`upsert`: killed after writing the new chunks, before the switch (rolled back).
    `delete`: killed after the switch, while deleting the old chunks (rolled forward)."""
    dq = make_docqa()
    doc = tmp_path / "policy.md"
    doc.write_text("# Leave\n\nStaff get 27 days of leave a year.\n")
    dq.indexer().ingest_file(doc)
    old = _assert_consistent(dq)
    doc.write_text("# Leave\n\nStaff get 30 days of leave a year.\n" + "More text. " * 200)
    del dq  # release nothing but our references; the child takes the folder alone

    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(tmp_path / "data"), str(doc), step],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]

    survivor = make_docqa()
    report = survivor.indexer().repair()
    assert report.changed
    chunks = _assert_consistent(survivor)
    record = survivor.records.list()[0]
    assert not record.pending_chunk_ids and not record.stale_chunk_ids
    if step == "upsert":
        assert chunks == old and record.status == DocumentStatus.INDEXED  # old version serves
    else:
        assert chunks and not chunks & old  # the new version serves
    again = survivor.indexer().ingest_file(doc)
    assert again.outcome in (IngestOutcome.UPDATED, IngestOutcome.UNCHANGED)
    assert "30 days" in survivor.retriever.retrieve("how many days of leave").hits[0].chunk.text


@pytest.mark.services
def test_record_store_works_on_postgresql(make_docqa, pg_database, tmp_path):
    dq = make_docqa(database_url=pg_database.url)
    doc = tmp_path / "pg.md"
    doc.write_text("# Backups\n\nBackups run nightly at 02:00 and are kept 35 days.\n")
    assert dq.indexer().ingest_file(doc).outcome == IngestOutcome.ADDED
    assert dq.indexer().ingest_file(doc).outcome == IngestOutcome.UNCHANGED
    _assert_consistent(dq)
    assert "35 days" in dq.answering.ask("how long are backups kept").text


def test_many_files_give_results_in_the_order_of_their_paths(dq, tmp_path):
    """ingest_paths reports each file (results and on_result calls) in the order of the
    paths, whatever its outcome, and the three stores agree afterwards."""
    folder = tmp_path / "docs"
    folder.mkdir()
    paths = []
    for i in range(6):
        path = folder / f"note{i}.md"
        path.write_text(f"# Note {i}\n\nRoom {i} is booked on day {i} for {i} guests.\n")
        paths.append(path)
    (folder / "empty.txt").write_text("")
    paths.insert(3, folder / "empty.txt")
    paths.insert(5, folder / "missing.txt")
    dq.indexer().ingest_file(paths[0])
    seen = []
    results = dq.indexer().ingest_paths(paths, on_result=seen.append)
    assert [r.source for r in results] == [r.source for r in seen]
    assert [Path(r.source).name for r in results] == [p.name for p in paths]
    outcomes = [r.outcome for r in results]
    assert outcomes[0] == IngestOutcome.UNCHANGED
    assert outcomes[3] == outcomes[5] == IngestOutcome.FAILED
    assert outcomes.count(IngestOutcome.ADDED) == 5
    assert len(_assert_consistent(dq)) == 6
