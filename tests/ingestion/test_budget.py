"""Parsing within a budget: ZIP bombs, page bombs and oversized text are refused from their
container before any parse, and a parse that runs out of memory or time, or crashes its
worker, fails the document (`over_budget`) instead of the process that serves."""

from __future__ import annotations

import os
import signal
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from docqa.domain import DocumentStatus, IngestOutcome
from docqa.errors import ConfigurationError, IngestError
from docqa.settings import load_settings
from ingestion.budget import ParseBudget, check_before_parsing
from ingestion.isolation import InProcessParser, IsolatedParser
from tests.documents import write_docx, write_docx_bomb, write_pdf, write_pptx

GIB = 1 << 30


def budget(**changes: object) -> ParseBudget:
    return ParseBudget.of(load_settings(ingestion=changes).ingestion)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's file: about 2 MB, `word/document.xml` inflating to 2 GiB of zeros."""
    path = write_docx_bomb(tmp_path_factory.mktemp("bomb") / "bomb.docx", 2 * GIB)
    assert path.stat().st_size < 4 << 20
    return path


# -- what the worker runs instead of the parser, to exercise each limit --------------------


def hog_memory(path: Path, **_: object) -> object:
    hoard = [bytearray(256 << 20) for _ in range(64)]  # 16 GiB, far past any test budget
    return hoard


def die(path: Path, **_: object) -> object:
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    raise AssertionError("unreachable")


def hang(path: Path, **_: object) -> object:
    time.sleep(600)
    raise AssertionError("unreachable")


# -- ZIP bombs ---------------------------------------------------------------------------


def test_a_docx_bomb_fails_over_budget_and_the_server_memory_stays_put(dq, bomb):
    server = psutil.Process()
    before = server.memory_info().rss

    result = dq.indexer().ingest_file(bomb)

    assert result.outcome == IngestOutcome.FAILED
    assert result.reason == "over_budget"
    assert "unpacks to 2.0 GiB" in result.error and "DOCQA_INGESTION__MAX_UNPACKED_MB" in (
        result.error
    )
    record = dq.records.get(result.document_id)
    assert record.status == DocumentStatus.FAILED and record.reason == "over_budget"
    assert server.memory_info().rss - before < 200 << 20


def test_the_bomb_is_refused_from_its_directory_before_any_parse(bomb, monkeypatch):
    def no_parsing(*args: object, **kwargs: object) -> object:
        raise AssertionError("the parser was called on a ZIP bomb")

    monkeypatch.setattr("ingestion.parse.parse_file", no_parsing)
    with pytest.raises(IngestError) as refused:
        InProcessParser(budget()).parse(bomb, source="bomb.docx")
    assert refused.value.reason == "over_budget"
    assert "it was not parsed" in refused.value.message


def test_archive_entries_and_compression_ratio_are_capped(tmp_path):
    many = tmp_path / "many.docx"
    with zipfile.ZipFile(many, "w") as zf:
        for n in range(50):
            zf.writestr(f"word/part{n}.xml", "<x/>")
    with pytest.raises(IngestError, match="50 parts, over the limit of 20"):
        check_before_parsing(many, "docx", budget(max_archive_entries=20))

    dense = write_docx_bomb(tmp_path / "dense.xlsx", 64 << 20)  # 64 MiB of zeros, ~1000:1
    with pytest.raises(IngestError, match=r"compressed \d+ to 1"):
        check_before_parsing(dense, "xlsx", budget())
    check_before_parsing(dense, "xlsx", budget(max_compression_ratio=5000))  # its choice


def test_an_ordinary_docx_passes_the_checks(tmp_path):
    path = write_docx(tmp_path / "memo.docx", {"Leave": ["Staff get 27 days of leave."] * 50})
    check_before_parsing(path, "docx", budget())


# -- pages and text ----------------------------------------------------------------------


def test_a_pdf_over_the_page_limit_fails_before_parsing(tmp_path):
    pdf = write_pdf(tmp_path / "long.pdf", [f"page {n}" for n in range(5)])
    with pytest.raises(IngestError, match="5 pages, over the limit of 3") as refused:
        InProcessParser(budget(max_pdf_pages=3)).parse(pdf, source="long.pdf")
    assert refused.value.reason == "over_budget"
    assert InProcessParser(budget(max_pdf_pages=5)).parse(pdf, source="long.pdf").elements


def test_text_over_the_limit_fails_over_budget(tmp_path):
    text = tmp_path / "long.txt"
    text.write_text("The canteen opens at noon. " * 2000)
    with pytest.raises(IngestError, match="DOCQA_INGESTION__MAX_TEXT_MB") as refused:
        InProcessParser(budget(max_text_mb=0.01)).parse(text, source="long.txt")
    assert refused.value.reason == "over_budget"


# -- the worker process's limits ---------------------------------------------------------


@pytest.mark.parametrize(
    "function, words",
    [
        (hog_memory, "needed more than 256 MiB of memory"),
        (die, "the parser process died on this file (killed by signal 9)"),
        (hang, "parsing took longer than 2 s"),
    ],
)
def test_a_parse_over_memory_or_time_or_a_crash_fails_only_that_file(tmp_path, function, words):
    doc = tmp_path / "doc.txt"
    doc.write_text("Lost badges are reported to the front desk within a day.")
    worker = IsolatedParser(
        budget(parse_memory_mb=256, parse_timeout_s=2),
        parse_function=f"{__name__}:{function.__name__}",
    )
    try:
        with pytest.raises(IngestError) as failed:
            worker.parse(doc, source="doc.txt")
        assert failed.value.reason == "over_budget"
        assert words in failed.value.message
        assert worker.worker_pid is None  # the failed worker is gone, its whole session too
        with pytest.raises(IngestError):
            worker.parse(doc, source="doc.txt")  # a fresh worker takes the next file
    finally:
        worker.close()


def test_the_isolated_parser_parses_like_the_in_process_one(parser, tmp_path):
    """The contract both `Parser`s keep: same elements, same failures."""
    memo = write_docx(tmp_path / "memo.docx", {"Leave": ["Staff get 27 days of leave."]})
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    here = InProcessParser(parser.budget)
    assert parser.parse(memo, source="memo.docx") == here.parse(memo, source="memo.docx")
    for implementation in (parser, here):
        with pytest.raises(IngestError) as failed:
            implementation.parse(empty, source="empty.txt")
        assert failed.value.reason == "empty"


def test_a_worker_memory_limit_leaves_room_for_real_documents(parser, tmp_path):
    pdf = write_pdf(tmp_path / "report.pdf", [f"Page {n} of the annual report." for n in range(30)])
    parsed = parser.parse(pdf, source="report.pdf")
    assert {e.page for e in parsed.elements} == set(range(1, 31))


def test_the_worker_loads_unstructured_outside_the_budget_of_the_file_that_needs_it(tmp_path):
    """Importing unstructured maps ~250 MiB: more than this budget, yet the deck parses
    (the worker starts without it, as text, Markdown, PDF and DOCX never need it)."""
    note = tmp_path / "note.txt"
    note.write_text("Lost badges are reported to the front desk within a day.")
    deck = write_pptx(tmp_path / "deck.pptx", [("Roadmap", "The Falcon release ships in March.")])
    worker = IsolatedParser(budget(parse_memory_mb=128))
    try:
        assert "front desk" in worker.parse(note, source="note.txt").elements[0].text
        parsed = worker.parse(deck, source="deck.pptx")
        assert "Falcon release" in " ".join(e.text for e in parsed.elements)
        assert "front desk" in worker.parse(note, source="note.txt").elements[0].text
    finally:
        worker.close()


# -- settings ----------------------------------------------------------------------------


def test_budget_settings_are_validated_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("DOCQA_INGESTION__PARSE_MEMORY_MB", "10")
    with pytest.raises(ConfigurationError, match="DOCQA_INGESTION__PARSE_MEMORY_MB"):
        load_settings()
    monkeypatch.delenv("DOCQA_INGESTION__PARSE_MEMORY_MB")
    monkeypatch.setenv("DOCQA_INGESTION__SOURCE_DIRS", "shared/docs")
    with pytest.raises(ConfigurationError, match="must be absolute paths"):
        load_settings()
