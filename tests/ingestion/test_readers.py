"""docqa's own readers (DOCQA_INGESTION__PARSER=fast): plain text, Markdown, PDF and DOCX
read without unstructured, with the same elements, sections, pages and failure reasons."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from docqa.errors import IngestError
from docqa.settings import IngestionSettings
from ingestion import parse
from ingestion.budget import ParseBudget
from ingestion.isolation import InProcessParser
from ingestion.pdf_text import PdfTextUnavailable
from tests.conftest import SHARED
from tests.documents import write_corpus, write_docx, write_pdf


def _parse(path: Path, **kwargs: str) -> parse.ParsedDocument:
    return parse.parse_file(path, source=path.name, **kwargs)


def _words(doc: parse.ParsedDocument) -> set[str]:
    return set(re.findall(r"\w+", " ".join(e.text for e in doc.elements).lower()))


# -- plain text --------------------------------------------------------------------------


def test_text_paragraphs_are_split_on_blank_lines_and_headings_name_sections(tmp_path):
    path = tmp_path / "guide.txt"
    path.write_text(
        "Visitor Guide to the Harbour Office\n\n"
        "Opening hours\n\n"
        "The office opens at eight and closes at four on weekdays, except on holidays.\n\n"
        "Parking\n\n"
        "Visitors park in garage B on level minus two; the barrier opens with the code.\n"
    )
    doc = _parse(path)
    parking = next(e for e in doc.elements if "garage B" in e.text)
    hours = next(e for e in doc.elements if "opens at eight" in e.text)
    assert parking.section == ("Visitor Guide to the Harbour Office", "Parking")
    assert hours.section == ("Visitor Guide to the Harbour Office", "Opening hours")
    assert parking.category == "NarrativeText" and parking.page is None
    assert [e.category for e in doc.elements].count("Title") == 3


def test_sentences_and_lists_are_not_taken_for_headings(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text(
        "The lamp is lit at dusk.\n\nIt burns until dawn, every night of the year.\n\n"
        "- check the oil\n- trim the wick\n- clean the lens\n"
    )
    doc = _parse(path)
    assert all(e.section == () for e in doc.elements)
    assert [e.text for e in doc.elements if e.category == "ListItem"] == [
        "- check the oil",
        "- trim the wick",
        "- clean the lens",
    ]


def test_wrapped_lines_are_joined_and_short_lines_kept_apart(tmp_path):
    prose = (
        "The lighthouse keeper lit the lamp every evening at dusk and kept it burning\n"
        "through the night, trimming the wick and polishing the great lens until the\n"
        "first boats came back into the harbour in the morning.\n"
    )
    path = tmp_path / "log.txt"
    path.write_text("Name Tom Evans\nStation North Point\n" + prose)
    texts = [e.text for e in _parse(path).elements]
    assert "Name Tom Evans" in texts and "Station North Point" in texts
    assert any(t.startswith("The lighthouse keeper") and t.endswith("morning.") for t in texts)


@pytest.mark.parametrize(
    "data, warned",
    [
        ("Le café sert une crème brûlée à 5 €.".encode("cp1252"), True),
        ("Le café sert une crème brûlée à 5 €.".encode("utf-16-le"), True),
        ("\ufeffLe café sert une crème brûlée à 5 €.".encode(), False),
    ],
)
def test_text_in_other_encodings_is_read_with_its_letters(tmp_path, data, warned):
    path = tmp_path / "cafe.txt"
    path.write_bytes(data)
    doc = _parse(path)
    assert doc.elements[0].text == "Le café sert une crème brûlée à 5 €."
    assert any("a guess" in w for w in doc.warnings) == warned


@pytest.mark.parametrize("data", [b"", b"  \n\r\n\t  ", "\n\n".encode("utf-16")])
def test_empty_text_fails_as_empty(tmp_path, data):
    path = tmp_path / "nothing.log"
    path.write_bytes(data)
    with pytest.raises(IngestError) as failed:
        _parse(path)
    assert failed.value.reason == "empty"


# -- Markdown ----------------------------------------------------------------------------

MARKDOWN = """\
# Office handbook

Welcome to the **Copenhagen** office.

## Parking

Visitors park in [garage B](https://example.com/garage) on level minus two.

- badges at the desk
- keys in the cabinet

Travel
------

| city | allowance |
|------|-----------|
| Oslo | 140 euros |

```python
print("expenses")
```
"""


def test_markdown_headings_give_the_section_path_and_blocks_keep_their_kind(tmp_path):
    path = tmp_path / "handbook.md"
    path.write_text(MARKDOWN)
    doc = _parse(path)
    by_text = {e.text: e for e in doc.elements}
    assert by_text["Welcome to the Copenhagen office."].section == ("Office handbook",)
    parking = by_text["Visitors park in garage B on level minus two."]
    assert parking.section == ("Office handbook", "Parking")
    assert by_text["badges at the desk"].category == "ListItem"
    table = next(e for e in doc.elements if e.category == "Table")
    assert table.text == "city | allowance\nOslo | 140 euros"
    assert table.section == ("Office handbook", "Travel")  # setext level 2 replaces Parking
    code = next(e for e in doc.elements if e.category == "CodeSnippet")
    assert code.text == 'print("expenses")'


# -- PDF ---------------------------------------------------------------------------------


def _pdf_with_furniture(path: Path, bodies: list[str]) -> Path:
    """Pages with a running head and a page number, as a report has."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for number, body in enumerate(bodies, start=1):
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.08, 0.96, "Annual Report 2024 - Harbour Authority", fontsize=8)
            fig.text(0.08, 0.85, body, va="top", fontsize=10)
            fig.text(0.5, 0.03, str(number), fontsize=8)
            pdf.savefig(fig)
            plt.close(fig)
    return path


def test_pdf_pages_keep_their_numbers_and_lose_their_running_heads(tmp_path):
    bodies = [f"Section {n} reports {n * 11} ships in the harbour." for n in range(1, 5)]
    doc = _parse(_pdf_with_furniture(tmp_path / "report.pdf", bodies))
    assert [(e.page, e.text) for e in doc.elements] == list(enumerate(bodies, start=1))


def test_pdf_outline_gives_sections(tmp_path):
    import pypdf

    plain = write_pdf(
        tmp_path / "plain.pdf",
        ["Holidays. Staff get 27 days a year.", "Expenses. Trains are reimbursed."],
    )
    writer = pypdf.PdfWriter(clone_from=str(plain))
    policies = writer.add_outline_item("Policies", 0)
    writer.add_outline_item("Holidays", 0, parent=policies)
    writer.add_outline_item("Expenses", 1, parent=policies)
    path = tmp_path / "policies.pdf"
    writer.write(path)
    doc = _parse(path)
    trains = next(e for e in doc.elements if "Trains" in e.text)
    assert (trains.page, trains.section) == (2, ("Policies", "Expenses"))


def test_pdf_line_end_hyphens_are_joined(tmp_path):
    path = write_pdf(tmp_path / "wrapped.pdf", [f"{'word ' * 14}applica-\ntions follow."])
    assert "applications" in _words(_parse(path))


def test_pdf_without_a_text_layer_fails_as_no_text(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 4))
    fig.add_axes((0, 0, 1, 1)).imshow([[0, 1], [1, 0]])
    fig.gca().axis("off")
    path = tmp_path / "scan.pdf"
    fig.savefig(path)
    plt.close(fig)
    with pytest.raises(IngestError) as failed:
        _parse(path)
    assert failed.value.reason == "no_text"
    assert "OCR" in failed.value.message


def test_a_pdf_pdfium_refuses_is_parsed_by_unstructured(tmp_path, monkeypatch):
    def refuse(path: Path) -> list[parse.Element]:
        raise PdfTextUnavailable("Failed to load document (PDFium: Data format error).")

    monkeypatch.setattr("ingestion.pdf_text.pdf_elements", refuse)
    path = write_pdf(tmp_path / "page.pdf", ["The Zephyr model detects tables."])
    assert "zephyr" in _words(_parse(path))


# -- DOCX --------------------------------------------------------------------------------


def _structured_docx(path: Path, *, page_breaks: bool) -> Path:
    import docx
    from docx.enum.text import WD_BREAK

    doc = docx.Document()
    doc.add_heading("Handbook", level=0)
    doc.add_heading("Travel", level=1)
    doc.add_heading("Trains", level=2)
    doc.add_paragraph("Second-class tickets are reimbursed.")
    doc.add_paragraph("Book through the portal", style="List Bullet")
    if page_breaks:
        doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    doc.add_heading("Hotels", level=2)
    doc.add_paragraph("Up to 140 euros a night.")
    table = doc.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("city", "cap"), ("Oslo", "160")], strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    doc.add_heading("Leave", level=1)
    doc.add_paragraph("Staff get 27 days a year.")
    doc.save(str(path))
    return path


def test_docx_heading_styles_give_the_section_path_and_tables_their_rows(tmp_path):
    doc = _parse(_structured_docx(tmp_path / "handbook.docx", page_breaks=False))
    by_text = {e.text: e for e in doc.elements}
    assert by_text["Second-class tickets are reimbursed."].section == (
        "Handbook",
        "Travel",
        "Trains",
    )
    assert by_text["Book through the portal"].category == "ListItem"
    assert by_text["city | cap\nOslo | 160"].category == "Table"
    assert by_text["city | cap\nOslo | 160"].section == ("Handbook", "Travel", "Hotels")
    assert by_text["Staff get 27 days a year."].section == ("Handbook", "Leave")
    assert {e.page for e in doc.elements} == {None}  # no recorded layout, no page numbers


def test_docx_page_breaks_number_the_pages(tmp_path):
    doc = _parse(_structured_docx(tmp_path / "handbook.docx", page_breaks=True))
    pages = {e.text: e.page for e in doc.elements}
    assert pages["Second-class tickets are reimbursed."] == 1
    assert pages["Up to 140 euros a night."] == 2


def test_a_docx_python_docx_cannot_load_fails_as_corrupt(tmp_path):
    path = tmp_path / "hollow.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    with pytest.raises(IngestError) as failed:
        _parse(path)
    assert failed.value.reason == "corrupt"


# -- both parsers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["txt", "cp1252", "md", "pdf", "docx"])
def test_fast_readers_keep_every_word_unstructured_finds(tmp_path, kind):
    path = write_corpus(tmp_path)[kind]
    fast, slow = _parse(path), _parse(path, parser="unstructured")
    assert _words(slow) <= _words(fast)
    assert {e.section for e in fast.elements} >= {e.section for e in slow.elements} - {()}


def test_the_parser_setting_sends_every_file_to_unstructured(tmp_path, monkeypatch):
    def unused(*args: object) -> None:
        raise AssertionError("docqa's readers were used")

    monkeypatch.setattr(parse, "_read_directly", unused)
    memo = write_docx(tmp_path / "memo.docx", {"Leave": ["Staff get 27 days of leave."]})
    parser = InProcessParser(ParseBudget.of(IngestionSettings()), parser="unstructured")
    assert "27 days" in parser.parse(memo, source="memo.docx").elements[-1].text


# -- the shared large corpus -------------------------------------------------------------

_LARGE = SHARED / "corpus" / "large"


@pytest.mark.slow
@pytest.mark.skipif(not _LARGE.exists(), reason="shared corpus absent")
@pytest.mark.parametrize("name", ["DA-619p.pdf", "handbook-872p.docx"])
def test_large_documents_parse_with_pages_and_sections(name):
    doc = _parse(_LARGE / name)
    assert doc.text_chars > 500_000
    assert len({e.page for e in doc.elements}) > 50  # the DOCX records breaks, not layout
    assert len({e.section for e in doc.elements}) > 50
