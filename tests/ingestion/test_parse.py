"""Parsing: every format yields text with page and section; every broken file fails with
a reason that names the real cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from docqa.errors import IngestError
from ingestion.parse import SUPPORTED_TYPES, decode_text, parse_file
from tests.conftest import SHARED, shared_path
from tests.documents import write_corpus, write_malformed


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def malformed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_malformed(tmp_path_factory.mktemp("malformed"))


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("pdf", "LayoutParser is an open-source library"),
        ("docx", "27 days of paid holiday"),
        ("pptx", "Falcon release ships in March"),
        ("xlsx", "Research 125000"),
        ("md", "Strandgade 93"),
        ("txt", "lighthouse keeper lit the lamp"),
        ("cp1252", "crème brûlée and costs 5 €"),
        ("html", "garage B on level minus two"),
        ("csv", "Aarhus 285000"),
    ],
)
def test_generated_format_parses_with_its_text(corpus, kind, expected):
    doc = parse_file(corpus[kind], source=corpus[kind].name)
    text = " ".join(e.text for e in doc.elements)
    assert expected in text


def test_pdf_elements_carry_page_numbers(corpus):
    doc = parse_file(corpus["pdf"], source="layout.pdf")
    pages = {e.page for e in doc.elements}
    assert pages == {1, 2}
    zephyr = next(e for e in doc.elements if "Zephyr" in e.text)
    assert zephyr.page == 2


def test_docx_elements_carry_their_heading_as_section(corpus):
    doc = parse_file(corpus["docx"], source="handbook.docx")
    expenses = next(e for e in doc.elements if "reimbursed" in e.text)
    assert expenses.section == ("Expenses",)


def test_guessed_encodings_are_reported_as_warnings(corpus):
    doc = parse_file(corpus["cp1252"], source="cafe.txt")
    assert any("cp1252" in w for w in doc.warnings)


@pytest.mark.parametrize(
    "kind, reason, words",
    [
        ("empty", "empty", "empty"),
        ("blank", "empty", "whitespace"),
        ("password_pdf", "password_protected", "password-protected"),
        ("password_xlsx", "password_protected", "password-protected"),
        ("garbage_pdf", "corrupt", "damaged"),
        ("not_pdf", "corrupt", "not a PDF"),
        ("broken_docx", "corrupt", "corrupt"),
        ("unsupported", "unsupported_type", "unsupported file type"),
    ],
)
def test_generated_malformed_file_fails_with_its_cause(malformed, kind, reason, words):
    with pytest.raises(IngestError) as info:
        parse_file(malformed[kind], source=malformed[kind].name)
    assert info.value.reason == reason
    assert words in info.value.message


@pytest.mark.parametrize(
    "data, encoding",
    [
        (b"plain ascii", "utf-8"),
        ("naïve".encode(), "utf-8"),
        ("\ufeffwith bom".encode(), "utf-8-sig"),
        ("naïve".encode("utf-16"), "utf-16"),
        ("naïve text".encode("utf-16-le"), "utf-16-le"),
        ("naïve text".encode("utf-16-be"), "utf-16-be"),
        ("naïve €".encode("cp1252"), "cp1252"),
    ],
)
def test_decode_text_guesses_the_encoding(data, encoding):
    name, text = decode_text(data)
    assert name == encoding
    assert "na" in text or "with bom" in text or "plain" in text


# -- the shared real-world corpus ---------------------------------------------------------

_FORMATS_DIR = SHARED / "corpus" / "formats"
FORMATS = sorted(p.name for p in _FORMATS_DIR.glob("*")) if _FORMATS_DIR.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMATS or ["(shared corpus absent)"])
def test_every_shared_format_file_parses_with_text(name):
    path = shared_path("corpus", "formats", name)
    if path.suffix.lower() not in SUPPORTED_TYPES:
        pytest.skip(f"{name} is not a document")
    doc = parse_file(path, source=name)
    assert doc.text_chars > 20
    assert all(e.text.strip() for e in doc.elements)


MALFORMED_EXPECTED = {
    "empty.txt": ("fail", "empty"),
    "fake-text-all-whitespace.txt": ("fail", "empty"),
    "password.pdf": ("fail", "password_protected"),
    "password_protected.xlsx": ("fail", "password_protected"),
    "fake-encrypted.msg": ("fail", "encrypted"),
    # pdfminer reads this once-broken structure; its text is real.
    "invalid-pdf-structure-pdfminer-one-page.pdf": ("ok", "National Cybersecurity Strategy"),
    # unstructured refuses it as "too complex" (vector graphics); pypdf reads its text.
    "failure-after-repair.pdf": ("ok", "Understanding Breast Cancer"),
    "fake-power-point-malformed.pptx": ("ok", ""),
    "fake-incomplete-json.txt": ("ok", "John Doe"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_EXPECTED))
def test_every_shared_malformed_file_fails_cleanly_or_yields_real_text(name):
    path = shared_path("corpus", "malformed", name)
    outcome, detail = MALFORMED_EXPECTED[name]
    if outcome == "fail":
        with pytest.raises(IngestError) as info:
            parse_file(path, source=name)
        assert info.value.reason == detail
    else:
        doc = parse_file(path, source=name)
        assert detail in " ".join(e.text for e in doc.elements)
        assert doc.text_chars > 10


def test_text_recovered_without_layout_comes_with_a_warning():
    # unstructured's path: it refuses this PDF as too complex and pypdf reads it instead
    # (pdfium, on the fast path, reads the text layer as for any other PDF).
    path = shared_path("corpus", "malformed", "failure-after-repair.pdf")
    doc = parse_file(path, source=path.name, parser="unstructured")
    assert any("without layout" in w for w in doc.warnings)


def test_words_cut_at_line_ends_are_joined_in_parsed_text(tmp_path):
    path = tmp_path / "wrapped.txt"
    path.write_text(
        "Layout analysis has many applica-\ntions in digitisation, from pre- and\n"
        "post-processing to well-known tasks; a well- known example follows.\n"
    )
    text = " ".join(e.text for e in parse_file(path, source=path.name).elements)
    assert "applications" in text
    assert "pre- and" in text
    assert "a well-known example" in text


@pytest.mark.skipif(
    not (SHARED / "corpus" / "formats" / "layout-parser-paper-fast.pdf").exists(),
    reason="shared corpus absent",
)
def test_pdf_text_has_no_words_cut_by_line_ends():
    doc = parse_file(
        SHARED / "corpus" / "formats" / "layout-parser-paper-fast.pdf", source="layout.pdf"
    )
    text = " ".join(e.text for e in doc.elements)
    assert "applications" in text
    assert "applica- tions" not in text
