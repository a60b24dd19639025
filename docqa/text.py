"""Text repairs every stage shares: words a line break cut in two.

PDF text layers (and text hard-wrapped from them) break long words at the end of a line
with a hyphen: "applica-\\ntions", which parsers then give as "applica- tions". Left so,
the word matches no keyword search, embeds as two fragments and reads badly in a quote.
Ingestion repairs it in chunks; the extractive answerer repairs quotes from chunks
indexed before that.

Sentences are split here too: the extractive answerer quotes them, and ingestion keeps a
vector per sentence of each chunk (`sentence_spans`) so the answerer need not embed them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A lower-case letter, a hyphen, then a line break or one space, then a lower-case letter:
# the shape of a word cut at the end of a line. "COVID- 19" and "Table- 2" are left alone.
_CUT = re.compile(r"(\w*[a-z])-(?:[ \t]*\r?\n[ \t]*| )([a-z]\w*)")
# "pre- and post-processing", "low- or middle-income": a hyphen that waits for its word.
_SUSPENDED = frozenset({"and", "or", "nor", "to", "versus", "vs", "but", "as", "than"})
_WORD = re.compile(r"\w+(?:-\w+)*")


def vocabulary(texts: Iterable[str]) -> set[str]:
    """The words (lower case, hyphenated compounds whole) of some texts: the evidence
    `dehyphenate` uses to tell a cut word ("applica- tions") from a cut compound
    ("well- known", when "well-known" occurs elsewhere)."""
    words: set[str] = set()
    for text in texts:
        words.update(w.lower() for w in _WORD.findall(text))
    return words


def dehyphenate(text: str, known: set[str] | None = None) -> str:
    """Join the words a line-end hyphen cut: "applica-\\ntions" and "applica- tions" become
    "applications". When `known` (a `vocabulary`) holds the hyphenated form and not the
    joined one, the hyphen stays ("well- known" -> "well-known"); "pre- and post-" keeps
    its space."""

    def join(match: re.Match[str]) -> str:
        left, right = match.group(1), match.group(2)
        if right in _SUSPENDED:
            return match.group(0)
        joined = f"{left}{right}"
        if known is not None:
            compound = f"{left}-{right}".lower()
            if compound in known and joined.lower() not in known:
                return f"{left}-{right}"
        return joined

    if "-" not in text:
        return text
    return _CUT.sub(join, text)


# A sentence ends at . ! ? followed by space and a capital, digit, quote or bracket, or at
# a line break; common abbreviations do not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n+")
_ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|et al|Fig|Figs|vs|cf|approx|No|Dr|Mr|Mrs|Ms|St)\.$")
MAX_SENTENCE_CHARS = 600
_ELLIPSIS = "\u2026"


def split_sentences(text: str) -> list[str]:
    """The sentences of a text, stripped; one longer than MAX_SENTENCE_CHARS is cut there
    and ends in an ellipsis."""
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]
    merged: list[str] = []
    for part in parts:
        if merged and _ABBREVIATIONS.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {part}"
        else:
            merged.append(part)
    return [
        s if len(s) <= MAX_SENTENCE_CHARS else s[:MAX_SENTENCE_CHARS] + _ELLIPSIS for s in merged
    ]


def passage_sentences(text: str) -> list[str]:
    """The sentences the extractive answerer reads in a chunk's text (line-end hyphens
    repaired first, for chunks indexed before ingestion repaired them)."""
    return split_sentences(dehyphenate(text))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where in `text` each of its `passage_sentences` lies, in order, as (start, end)
    character offsets; (0, 0) for one that does not occur as is (a repaired hyphen)."""
    spans: list[tuple[int, int]] = []
    position = 0
    for sentence in passage_sentences(text):
        probe = sentence[: -len(_ELLIPSIS)] if sentence.endswith(_ELLIPSIS) else sentence
        start = text.find(probe, position)
        if start < 0:
            spans.append((0, 0))
            continue
        spans.append((start, start + len(probe)))
        position = start + len(probe)
    return spans
