"""A PDF's text layer to elements with pdfium, ~100x faster than pdfminer via unstructured.

pdfium reads the text in reading order per page. Paragraphs are rebuilt from line lengths
and final punctuation, the outline (bookmarks) gives the section path, and lines that
repeat at the top or bottom of most pages (running heads, page numbers) are dropped as
page furniture.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docqa.domain import Element
from ingestion.plain_text import heading_text

# pdfium marks a hyphen it judged to end a line (and joins the lines) with U+FFFE or U+0002;
# "- " hands the choice between a cut word and a compound to `dehyphenate`.
_LINE_END_HYPHEN = re.compile("[\ufffe\x02]")
_PARAGRAPH_END = re.compile(r"[.!?:;\"”’)]$")
_CONTINUED = re.compile(r"[-,–—]$")
_DIGITS = re.compile(r"\d+")
_PAGE_NUMBER = re.compile(r"(?i)^(?:page\s*)?\d{1,5}(?:\s*(?:/|of)\s*\d{1,5})?$")
# Lines near a page's top or bottom that may be furniture, and how often one must repeat.
_EDGE_LINES = 2
_FURNITURE_SHARE = 0.5


class PdfTextUnavailable(Exception):
    """pdfium could not open or read the file; the caller uses its slower parser."""


def pdf_elements(path: Path) -> list[Element]:
    """Paragraphs per page, with page numbers and the outline's section path.

    Returns no elements when the PDF has no text layer.

    :raises PdfTextUnavailable: pdfium refused the file (damaged, encrypted).
    """
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise PdfTextUnavailable(str(exc)) from exc
    try:
        pages = [_page_lines(pdf, i) for i in range(len(pdf))]
        outline = _outline(pdf)
    except pdfium.PdfiumError as exc:
        raise PdfTextUnavailable(str(exc)) from exc
    finally:
        pdf.close()
    furniture = _furniture(pages)
    elements: list[Element] = []
    section: tuple[str, ...] = ()
    for number, lines in enumerate(pages, start=1):
        lines = _strip_edges(lines, furniture)
        on_page: dict[str, tuple[str, ...]] = {}
        for mark_section, title in outline.get(number, []):
            if any(_same_heading(title, line) for line in lines):
                on_page.setdefault(title, mark_section)
            else:  # a bookmark whose title is not on its page starts the page
                section = mark_section
        for para, heading in _paragraphs(lines, list(on_page)):
            if heading is not None:
                section = on_page[heading]
            text = unicodedata.normalize("NFKC", " ".join(para)).strip()
            if text:
                category = "Title" if heading is not None else _category(text)
                elements.append(Element(text, category, page=number, section=section))
    return elements


def _page_lines(pdf: Any, index: int) -> list[str]:
    page = pdf[index]
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
    finally:
        textpage.close()
        page.close()  # a page holds its parsed content until closed
    text = _LINE_END_HYPHEN.sub("- ", text)
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _outline(pdf: Any) -> dict[int, list[tuple[tuple[str, ...], str]]]:
    """Page number -> the (section path, title) of each bookmark that points there."""
    marks: dict[int, list[tuple[tuple[str, ...], str]]] = {}
    stack: list[str] = []
    for bookmark in pdf.get_toc(max_depth=8):
        title = heading_text(unicodedata.normalize("NFKC", bookmark.get_title() or ""))
        dest = bookmark.get_dest()
        index = dest.get_index() if dest is not None else None
        del stack[bookmark.level :]
        stack.append(title)
        if title and index is not None:
            marks.setdefault(index + 1, []).append((tuple(s for s in stack if s), title))
    return marks


def _same_heading(title: str, line: str) -> bool:
    return " ".join(line.split()).casefold() == title.casefold()


def _furniture(pages: list[list[str]]) -> set[str]:
    """Lines (digits folded) found near the top or bottom of at least half the pages."""
    if len(pages) < 3:
        return set()
    seen: Counter[str] = Counter()
    for lines in pages:
        seen.update({_DIGITS.sub("#", line) for line in lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]})
    return {line for line, n in seen.items() if n >= max(3, _FURNITURE_SHARE * len(pages))}


def _strip_edges(lines: list[str], furniture: set[str]) -> list[str]:
    def is_furniture(line: str) -> bool:
        return bool(_PAGE_NUMBER.match(line)) or _DIGITS.sub("#", line) in furniture

    start, end = 0, len(lines)
    while start < min(end, _EDGE_LINES) and is_furniture(lines[start]):
        start += 1
    while end > max(start, len(lines) - _EDGE_LINES) and is_furniture(lines[end - 1]):
        end -= 1
    return lines[start:end]


def _paragraphs(lines: list[str], headings: list[str]) -> Iterator[tuple[list[str], str | None]]:
    """Group a page's lines into paragraphs, each with the outline heading it is (or None).

    A paragraph ends at a short line that closes a sentence, and before a heading. A short
    line that stands alone (an unnumbered heading: "1 Introduction") is a paragraph too.
    """
    if not lines:
        return
    full = sorted(len(line) for line in lines)[int(len(lines) * 0.9)]
    para: list[str] = []
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        heading = next((h for h in headings if _same_heading(h, line)), None)
        if heading is not None:
            if para:
                yield para, None
            para = []
            headings.remove(heading)
            yield [line], heading
            continue
        para.append(line)
        short = len(line) < 0.85 * full
        alone = not para[:-1] and len(line) < 0.6 * full and after[:1].isupper()
        if short and (_PARAGRAPH_END.search(line) or (alone and not _CONTINUED.search(line))):
            yield para, None
            para = []
    if para:
        yield para, None


def _category(text: str) -> str:
    return "NarrativeText" if _PARAGRAPH_END.search(text) else "UncategorizedText"
