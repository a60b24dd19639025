"""Chunking: never longer than the embedding model reads, structure respected, neighbours
overlap."""

from __future__ import annotations

import itertools

import pytest

from docqa.domain import Element, ParsedDocument
from docqa.errors import ConfigurationError
from docqa.settings import ChunkingSettings
from ingestion.chunk import Chunker


@pytest.fixture(scope="module")
def chunker(embedder) -> Chunker:
    return Chunker(embedder, ChunkingSettings())


def _doc(*elements: Element) -> ParsedDocument:
    return ParsedDocument(source="s", file_type="txt", elements=list(elements))


PATHOLOGICAL = {
    "long prose": "The committee reviewed the annual budget in detail. " * 400,
    "one giant word": "x" * 20000,
    "url soup": " ".join(f"https://example.org/{i}/a-b_c?d={i * 7}" for i in range(800)),
    "cjk without spaces": "東京都の人口は約千四百万人であり日本最大の都市である。" * 300,
    "numbers table": " | ".join(str(i * 12345.678) for i in range(3000)),
    "emoji": "🙂🚀📄 " * 3000,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_no_chunk_exceeds_the_embedding_window(chunker, embedder, name):
    chunks = chunker.chunk(
        _doc(Element(PATHOLOGICAL[name], "NarrativeText")), document_id="d", version="v"
    )
    assert chunks
    window = embedder.max_tokens
    for chunk in chunks:
        assert embedder.count_tokens(chunk.text) <= chunker.settings.chunk_tokens <= window
        # The model's own tokenizer with special tokens: what would be truncated.
        ids = embedder.tokenizer(chunk.text, add_special_tokens=True)["input_ids"]
        assert len(ids) <= embedder._window
        assert chunk.token_count == embedder.count_tokens(chunk.text)


def test_chunk_size_above_the_model_window_is_refused(embedder):
    with pytest.raises(ConfigurationError, match="window"):
        Chunker(embedder, ChunkingSettings(chunk_tokens=400, overlap_tokens=10))


def test_chunks_do_not_cross_headings_or_pages(chunker):
    body = "Revenue grew in every region during the quarter under review. " * 8
    chunks = chunker.chunk(
        _doc(
            Element("Results", "Title", page=1, section=("Results",)),
            Element(body, "NarrativeText", page=1, section=("Results",)),
            Element("Outlook", "Title", page=1, section=("Outlook",)),
            Element(
                body.replace("grew", "will grow"), "NarrativeText", page=1, section=("Outlook",)
            ),
            Element(body.replace("grew", "fell"), "NarrativeText", page=2, section=("Outlook",)),
        ),
        document_id="d",
        version="v",
    )
    assert [(c.page, c.section) for c in chunks] == [
        (1, "Results"),
        (1, "Outlook"),
        (2, "Outlook"),
    ]
    assert chunks[0].text.startswith("Results")


def test_a_lone_heading_joins_the_section_after_it(chunker):
    chunks = chunker.chunk(
        _doc(
            Element("Chapter 4", "Title", page=3, section=("Chapter 4",)),
            Element("4.1 Safety", "Title", page=3, section=("Chapter 4", "4.1 Safety")),
            Element(
                "Wear gloves in the laboratory at all times. " * 5,
                "NarrativeText",
                page=3,
                section=("Chapter 4", "4.1 Safety"),
            ),
        ),
        document_id="d",
        version="v",
    )
    assert len(chunks) == 1
    assert chunks[0].section == "Chapter 4 > 4.1 Safety"
    assert chunks[0].text.startswith("Chapter 4")


def test_long_sections_split_with_overlap_between_neighbours(chunker):
    sentences = [f"Sentence number {i} describes finding {i} of the audit." for i in range(120)]
    chunks = chunker.chunk(
        _doc(Element(" ".join(sentences), "NarrativeText")), document_id="d", version="v"
    )
    assert len(chunks) > 3
    for a, b in itertools.pairwise(chunks):
        tail = a.text.split()[-5:]
        assert " ".join(tail) in b.text  # the end of one chunk opens the next
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_chunk_ids_are_deterministic_and_change_with_content(chunker):
    doc = _doc(Element("Stable text for ids. " * 10, "NarrativeText"))
    first = [c.chunk_id for c in chunker.chunk(doc, document_id="d", version="hash1")]
    again = [c.chunk_id for c in chunker.chunk(doc, document_id="d", version="hash1")]
    changed = [c.chunk_id for c in chunker.chunk(doc, document_id="d", version="hash2")]
    assert first == again
    assert not set(first) & set(changed)


def test_token_counts_are_whole_after_the_model_truncated_a_text(embedder):
    # Embedding truncates at the window, and the tokenizer wrapper leaves its backend so;
    # counting must still see every token (else long sections would never be split).
    long = "lighthouse " * 1000
    embedder.embed_documents([long])
    wrapper = embedder.tokenizer(long, add_special_tokens=False, verbose=False)["input_ids"]
    assert embedder.count_tokens(long) == len(wrapper) > embedder.max_tokens
