"""The `[n]` markers of a generated answer, turned into the citations the extractive path
gives: marker `[k]` in the answer text is `citations[k-1]`, numbered in order of first use.

The model numbers passages as the prompt listed them (by relevance); the answer is
renumbered so a reader finds source k at position k. A marker that points at no passage
(`[7]` with five passages, a paper's own reference number) is dropped from the text.
"""

from __future__ import annotations

import re

from docqa.domain import Citation, ScoredChunk

# [3], [1, 2], [1;2]: one or more passage numbers in brackets.
MARKER = re.compile(r"\[\s*(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\s*\]")

NO_CITATION_WARNING = (
    "the answer cites none of the passages it was given; check it against the documents"
)


class CitationMarkers:
    """Rewrites markers as text arrives; `citations` lists the passages cited so far.

    Feed text whose markers are whole (`StreamSanitizer` never releases half a bracket).
    """

    def __init__(self, passages: list[ScoredChunk]) -> None:
        self.passages = passages
        self._number: dict[int, int] = {}  # passage index -> number in the answer
        self.dropped = 0

    def rewrite(self, text: str) -> str:
        return MARKER.sub(self._renumber, text)

    def _renumber(self, match: re.Match[str]) -> str:
        out = []
        for part in re.split(r"[,;]", match.group(1)):
            index = int(part) - 1
            if not 0 <= index < len(self.passages):
                self.dropped += 1
                continue
            number = self._number.setdefault(index, len(self._number) + 1)
            marker = f"[{number}]"
            if marker not in out:
                out.append(marker)
        return "".join(out)

    @property
    def citations(self) -> list[Citation]:
        order = sorted(self._number, key=self._number.__getitem__)
        return [Citation.of(self.passages[i]) for i in order]
