"""Plain text and Markdown to elements without unstructured.

unstructured classifies every paragraph of a text file with spaCy, which costs seconds per
file and buys little: docqa only uses the paragraphs and which of them are headings. Here
a paragraph is what blank lines delimit and a heading is a short unpunctuated line that
a longer paragraph follows (plain text) or what Markdown marks as one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from docqa.domain import Element

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•‣◦·]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+\S")
_SENTENCE_END = re.compile(r"[.!?,;:…\"”'’)\]]$")
_HEADING_MAX_WORDS = 12
# Text wrapped by a program leaves each line at least this share of the wrap width full
# (proportional fonts copied out of a page vary more than fixed-width ones).
_WRAP_SLACK = 0.8
_MAX_WRAP_WIDTH = 200
_WRAP_WINDOW = 3
# A document's own title, on its first line, may be a long one.
_DOCUMENT_TITLE_MAX_CHARS = 200


def text_elements(text: str) -> list[Element]:
    """Paragraphs of a plain-text file; headings set the `section` of what follows.

    The first paragraph, when it is one unpunctuated line, is the document's title and
    heads every section (depth 0); later headings replace one another (depth 1).
    """
    paragraphs = [
        lines
        for block in _PARAGRAPH_BREAK.split(_normalise_newlines(text))
        for lines in _unwrap([line.strip() for line in block.splitlines() if line.strip()])
    ]
    elements: list[Element] = []
    title: tuple[str, ...] = ()
    heading: tuple[str, ...] = ()
    for i, lines in enumerate(paragraphs):
        following = " ".join(paragraphs[i + 1]) if i + 1 < len(paragraphs) else None
        if len(lines) == 1 and following is not None:
            line = lines[0]
            if i == 0 and _is_document_title(line):
                title = (heading_text(line),)
                elements.append(_element(line, "Title", title))
                continue
            if _is_heading(line, following):
                heading = (heading_text(line),)
                elements.append(_element(line, "Title", title + heading))
                continue
        category = "ListItem" if _LIST_ITEM.match(lines[0]) else _category(lines)
        elements.append(_element(" ".join(lines), category, title + heading))
    return [e for e in elements if e.text]


def _unwrap(lines: list[str]) -> Iterator[list[str]]:
    """Split a block of lines where a break was meant: after a line the next word would
    still have fitted on (a short line, a list item, a heading), not where text wrapped."""
    if not lines:
        return
    # The wrap width is read locally (a table and prose in one block have different ones);
    # lines longer than any wrap width are whole paragraphs, no evidence of it.
    lengths = [len(line) if len(line) <= _MAX_WRAP_WIDTH else 0 for line in lines]
    para: list[str] = []
    for i, (line, after) in enumerate(zip(lines, [*lines[1:], None], strict=True)):
        para.append(line)
        if after is None:
            break
        width = max(lengths[max(0, i - _WRAP_WINDOW) : i + _WRAP_WINDOW + 1])
        next_word = after.split(maxsplit=1)[0]
        wrapped = len(line) + 1 + len(next_word) > _WRAP_SLACK * width or line.endswith("-")
        if not wrapped or _LIST_ITEM.match(after):
            yield para
            para = []
    yield para


def markdown_elements(text: str) -> list[Element]:
    """Markdown blocks in order: headings (ATX and setext) give the section path; lists,
    code and tables stay as text."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(_normalise_newlines(text))
    return [e for e in _markdown_blocks(tokens) if e.text]


def _markdown_blocks(tokens: list[Any]) -> Iterator[Element]:
    headings: list[tuple[int, str]] = []
    in_list_item = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        section = tuple(h for _, h in headings)
        if tok.type == "heading_open":
            depth = int(tok.tag[1:])
            text = _inline_text(tokens[i + 1])
            headings = [(d, h) for d, h in headings if d < depth]
            headings.append((depth, heading_text(text)))
            yield _element(text, "Title", tuple(h for _, h in headings))
            i += 3
            continue
        if tok.type == "list_item_open":
            in_list_item += 1
        elif tok.type == "list_item_close":
            in_list_item -= 1
        elif tok.type == "inline" and tokens[i - 1].type == "paragraph_open":
            yield _element(
                _inline_text(tok), "ListItem" if in_list_item else "NarrativeText", section
            )
        elif tok.type in ("fence", "code_block"):
            yield _element(tok.content.rstrip("\n"), "CodeSnippet", section, keep_lines=True)
        elif tok.type == "html_block":
            yield _element(tok.content, "UncategorizedText", section, keep_lines=True)
        elif tok.type == "table_open":
            rows, i = _markdown_table(tokens, i)
            yield _element("\n".join(rows), "Table", section, keep_lines=True)
            continue
        i += 1


def _markdown_table(tokens: list[Any], i: int) -> tuple[list[str], int]:
    """The rows of the table opening at `i`, cells joined by " | "; the index after it."""
    rows: list[str] = []
    cells: list[str] = []
    while tokens[i].type != "table_close":
        tok = tokens[i]
        if tok.type == "inline":
            cells.append(_inline_text(tok))
        elif tok.type == "tr_close":
            rows.append(" | ".join(cells))
            cells = []
        i += 1
    return rows, i + 1


def _inline_text(token: Any) -> str:
    """The visible text of an inline token: markup dropped, image alt text kept."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(_inline_text(child))
    return "".join(parts)


def _is_document_title(line: str) -> bool:
    return len(line) <= _DOCUMENT_TITLE_MAX_CHARS and _looks_like_heading(line)


def _is_heading(line: str, following: str) -> bool:
    return (
        len(line.split()) <= _HEADING_MAX_WORDS
        and _looks_like_heading(line)
        and len(following) >= max(2 * len(line), 40)
    )


def _looks_like_heading(line: str) -> bool:
    return (
        not _SENTENCE_END.search(line)
        and not _LIST_ITEM.match(line)
        and "://" not in line
        and sum(c.isalpha() for c in line) >= max(2, len(line) // 2)
    )


def _category(lines: list[str]) -> str:
    return "NarrativeText" if _SENTENCE_END.search(lines[-1]) else "UncategorizedText"


def _element(
    text: str, category: str, section: tuple[str, ...], *, keep_lines: bool = False
) -> Element:
    text = unicodedata.normalize("NFKC", text)
    if not keep_lines:
        text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return Element(text=text.strip("\n "), category=category, section=section)


def heading_text(text: str) -> str:
    """A heading as a section name: one line, at most 120 characters."""
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:117] + "..."


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
