"""A DOCX body to elements with python-docx, without unstructured's per-paragraph heuristics.

Heading styles (and styles based on them) give the section path, tables become one
element of " | "-joined rows, headers and footers are left out as page furniture. Page
numbers come from the page breaks Word recorded when it last laid the document out, as
unstructured reads them; a document without any has no page numbers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docqa.domain import Element
from ingestion.plain_text import heading_text

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)
# A section break that starts a new page; "continuous" does not.
_PAGE_SECTION_BREAKS = {"nextPage", "oddPage", "evenPage"}


def docx_elements(path: Path) -> list[Element]:
    """Paragraphs and tables of the body in document order.

    :raises Exception: whatever python-docx raises on a damaged file; the caller falls
        back to its slower parser, which names the damage.
    """
    import docx

    document = docx.Document(str(path))
    walker = _BodyWalker(document)
    return list(walker.elements(document.element.body))


def _section_start(sect: Any) -> str:
    kind = sect.find(f"{_W}type")
    return kind.get(f"{_W}val") if kind is not None else "nextPage"


def _in_paragraph_or_body(sect: Any) -> bool:
    """Section properties of the body or a paragraph (not a revision's old copy)."""
    parent = sect.getparent()
    return parent is not None and parent.tag in (f"{_W}pPr", f"{_W}body")


class _BodyWalker:
    def __init__(self, document: Any) -> None:
        self.styles = {s.style_id: s for s in document.styles}
        self.heading_levels: dict[str | None, int | None] = {}
        xml = document.element.body
        self.page: int | None = (
            1
            if next(xml.iter(f"{_W}lastRenderedPageBreak"), None) is not None
            or any(br.get(f"{_W}type") == "page" for br in xml.iter(f"{_W}br"))
            else None
        )
        self.just_broke = False
        self.headings: list[tuple[int, str]] = []
        # A section's properties close it, but the kind of break before a section is in
        # its own properties: each section break is read from the section that follows.
        self.section_starts = [
            _section_start(sect) for sect in xml.iter(f"{_W}sectPr") if _in_paragraph_or_body(sect)
        ][1:]

    def elements(self, body: Any) -> Iterator[Element]:
        for child in body.iterchildren():
            if child.tag == f"{_W}p":
                yield from self._paragraph(child)
            elif child.tag == f"{_W}tbl":
                rows = list(self._table_rows(child))
                if rows:
                    yield self._element("\n".join(rows), "Table")
            elif child.tag == f"{_W}sdt":  # content controls (a table of contents, a form)
                content = child.find(f"{_W}sdtContent")
                if content is not None:
                    yield from self.elements(content)

    def _paragraph(self, p: Any) -> Iterator[Element]:
        """The paragraph's text, cut where a page break falls inside it (so each piece
        carries its page), or the heading it is."""
        style = p.find(f"{_W}pPr/{_W}pStyle")
        style_id = style.get(f"{_W}val") if style is not None else None
        level = self._heading_level(style_id)
        numbered = p.find(f"{_W}pPr/{_W}numPr") is not None or self._is_list_style(style_id)
        category = "ListItem" if numbered else "NarrativeText"
        pieces: list[tuple[str, int | None]] = []
        parts: list[str] = []
        for node in p.iter(
            f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr", f"{_W}lastRenderedPageBreak"
        ):
            tag = node.tag
            if tag == f"{_W}t":
                if node.text:
                    parts.append(node.text)
                    self.just_broke = False
            elif tag == f"{_W}tab":
                parts.append("\t")
            elif tag == f"{_W}br" and node.get(f"{_W}type") == "page":
                pieces.append(("".join(parts), self.page))
                parts = []
                self._break_page()
            elif tag == f"{_W}lastRenderedPageBreak":
                if self.just_broke:  # Word records a hard break twice
                    self.just_broke = False
                else:
                    pieces.append(("".join(parts), self.page))
                    parts = []
                    self._break_page()
            elif tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
        pieces.append(("".join(parts), self.page))
        pieces = [(text, page) for text, page in pieces if text.strip()]
        if pieces and level is not None:
            text = " ".join(text for text, _ in pieces)
            self.headings = [(d, h) for d, h in self.headings if d < level]
            self.headings.append((level, heading_text(text)))
            yield self._element(text, "Title", pieces[0][1])
        elif pieces:
            yield from (self._element(text, category, page) for text, page in pieces)
        if p.find(f"{_W}pPr/{_W}sectPr") is not None and self.section_starts:
            start = self.section_starts.pop(0)
            if start in _PAGE_SECTION_BREAKS:
                self._break_page()
                if self.page is not None and (self.page % 2 == 0) == (start == "oddPage"):
                    self.page += 1  # an odd (even) page section skips a page to get there

    def _break_page(self) -> None:
        if self.page is not None:
            self.page += 1
        self.just_broke = True

    def _is_list_style(self, style_id: str | None) -> bool:
        style = self.styles.get(style_id)
        return style is not None and (style.name or "").startswith("List")

    def _heading_level(self, style_id: str | None) -> int | None:
        """Depth of a heading style (Title 0, Heading N N), following `based on` links."""
        if style_id not in self.heading_levels:
            level = None
            style = self.styles.get(style_id)
            for _ in range(5):
                if style is None:
                    break
                name = (style.name or "").strip()
                match = _HEADING_STYLE.match(name)
                if match or name.lower() == "title":
                    level = int(match.group(1)) if match else 0
                    break
                style = style.base_style
            self.heading_levels[style_id] = level
        return self.heading_levels[style_id]

    def _table_rows(self, tbl: Any) -> Iterator[str]:
        for tr in tbl.iterchildren(f"{_W}tr"):
            cells = []
            for tc in tr.iterchildren(f"{_W}tc"):
                text = " ".join(
                    "".join(t.text or "" for t in p.iter(f"{_W}t")) for p in tc.iter(f"{_W}p")
                ).strip()
                if text:
                    cells.append(" ".join(text.split()))
            if cells:
                yield " | ".join(cells)

    def _element(self, text: str, category: str, page: int | None = None) -> Element:
        text = unicodedata.normalize("NFKC", text).strip()
        return Element(
            text=text,
            category=category,
            page=page if page is not None else self.page,
            section=tuple(h for _, h in self.headings),
        )
