"""Elements to chunks sized in the embedding model's own tokens.

A chunk longer than the model's window would be silently truncated when embedded, so its
tail could never be found. Sizes are therefore counted with the model's tokenizer and every
chunk is checked against the limit, with a hard split at token boundaries as the last resort.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from docqa.domain import Chunk, Element, ParsedDocument
from docqa.errors import ConfigurationError
from docqa.settings import ChunkingSettings


class TokenCounter(Protocol):
    @property
    def tokenizer(self) -> Any: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass
class _Section:
    page: int | None
    section: tuple[str, ...]
    texts: list[str] = field(default_factory=list)
    tokens: int = 0


class Chunker:
    def __init__(self, counter: TokenCounter, settings: ChunkingSettings) -> None:
        if settings.chunk_tokens > counter.max_tokens:
            raise ConfigurationError(
                f"DOCQA_CHUNKING__CHUNK_TOKENS={settings.chunk_tokens} exceeds the embedding "
                f"model's window of {counter.max_tokens} tokens: longer chunks would be cut "
                "when embedded. Lower it."
            )
        self.counter = counter
        self.settings = settings
        self._splitter: Any = None
        # Token counts of the texts of the document being chunked: the splitter measures
        # the same pieces again as it recurses and merges (half its calls, measured). A
        # count depends on the text alone, so threads chunking at once may share it.
        self._counts: dict[str, int] = {}

    def _count(self, text: str) -> int:
        n = self._counts.get(text)
        if n is None:
            n = self._counts[text] = self.counter.count_tokens(text)
        return n

    @property
    def fingerprint(self) -> str:
        """What determines the chunks of a file besides its bytes, recorded on the index."""
        return json.dumps(
            {
                "chunk_tokens": self.settings.chunk_tokens,
                "overlap_tokens": self.settings.overlap_tokens,
                "min_section_tokens": self.settings.min_section_tokens,
                # 2: docqa's own readers for text, Markdown, PDF and DOCX, and line-end
                # hyphens joined: the same file gives other chunks than version 1 did.
                "version": 2,
            },
            sort_keys=True,
        )

    @property
    def splitter(self) -> Any:
        if self._splitter is None:
            from langchain_text_splitters import RecursiveCharacterTextSplitter

            self._splitter = RecursiveCharacterTextSplitter(
                chunk_size=self.settings.chunk_tokens,
                chunk_overlap=self.settings.overlap_tokens,
                length_function=self._count,
                separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
                keep_separator="end",
                strip_whitespace=True,
            )
        return self._splitter

    def chunk(self, doc: ParsedDocument, *, document_id: str, version: str) -> list[Chunk]:
        """Split a parsed document; `version` (the content hash) makes ids change with content."""
        stem = hashlib.sha1(f"{version}|{self.fingerprint}".encode()).hexdigest()[:10]
        chunks: list[Chunk] = []
        self._counts = {}  # one document's pieces at a time
        for section in self._sections(doc.elements):
            for text in self._split(section):
                chunks.append(
                    Chunk(
                        chunk_id=f"{document_id}:{stem}:{len(chunks):05d}",
                        document_id=document_id,
                        text=text,
                        position=len(chunks),
                        source=doc.source,
                        file_type=doc.file_type,
                        page=section.page,
                        section=" > ".join(section.section),
                        token_count=self._count(text),
                    )
                )
        return chunks

    def _sections(self, elements: list[Element]) -> Iterator[_Section]:
        """Group elements by page and heading, folding a too-short group into the next one
        on the same page (a heading alone, a one-line caption)."""
        pending: _Section | None = None
        for el in elements:
            tokens = self._count(el.text)
            if pending is not None and (pending.page, pending.section) == (el.page, el.section):
                pending.texts.append(el.text)
                pending.tokens += tokens
                continue
            if pending is not None:
                if pending.tokens < self.settings.min_section_tokens and pending.page == el.page:
                    # Carry the short text forward into the next section.
                    carried = pending
                    pending = _Section(el.page, el.section, [*carried.texts, el.text])
                    pending.tokens = carried.tokens + tokens
                    continue
                yield pending
            pending = _Section(el.page, el.section, [el.text], tokens)
        if pending is not None:
            yield pending

    def _split(self, section: _Section) -> Iterator[str]:
        text = "\n\n".join(section.texts)
        pieces = (
            [text]
            if section.tokens <= self.settings.chunk_tokens
            else self.splitter.split_text(text)
        )
        for piece in pieces:
            piece = piece.strip()
            if not piece:
                continue
            if self._count(piece) <= self.settings.chunk_tokens:
                yield piece
            else:
                yield from self._hard_split(piece)

    def _hard_split(self, text: str) -> Iterator[str]:
        """Cut at token boundaries, using the tokenizer's character offsets."""
        enc = self.counter.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        offsets = enc["offset_mapping"]
        size = self.settings.chunk_tokens
        step = size - self.settings.overlap_tokens
        for start in range(0, len(offsets), step):
            window = offsets[start : start + size]
            piece = text[window[0][0] : window[-1][1]].strip()
            # Re-tokenising a cut can merge pieces differently; never exceed the limit.
            while piece and self.counter.count_tokens(piece) > size:
                piece = piece[: int(len(piece) * 0.95)]
            if piece:
                yield piece
            if start + size >= len(offsets):
                break
