"""The boundaries of retrieval: the embedding model, the two indexes retrieval searches and
ingestion writes, and the retriever that inference and evals ask.

Both indexes are keyed by chunk id. Writes are idempotent: upserting an id again replaces
it, deleting an id that is absent is not an error. Neither raises for an empty batch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from docqa.domain import Chunk, ScoredChunk


@runtime_checkable
class SentencePooling(Protocol):
    """An embedder that can also return, from the same forward pass, one vector per
    character span of each text (the mean of the span's token outputs, unit length)."""

    def embed_documents_pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """`embed_documents(texts)`, and per text an array of one row per span: a zero row
        for a span with no token inside the model's window (or (0, 0))."""


class Embedder(Protocol):
    """Text to unit-length vectors. The same model must embed chunks and questions.

    `model_id` is recorded on every collection; an index built by one model is never
    queried with another. Ingestion embeds chunks, retrieval questions, the extractive
    answerer sentences and evals the benchmark questions, all with one instance.
    """

    model_id: str

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads before truncating, special tokens excluded."""

    @property
    def tokenizer(self) -> Any:
        """A Hugging Face fast tokenizer (chunk sizes are counted with it)."""

    def count_tokens(self, text: str) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, float32, L2-normalised; an empty input gives shape (0, dim)."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class SearchFilters:
    """Restrict retrieval to some documents, sources or file types (each a list: any of)."""

    document_ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    file_types: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.document_ids or self.sources or self.file_types)

    def matches(self, meta: dict[str, Any]) -> bool:
        return (
            (not self.document_ids or meta.get("document_id") in self.document_ids)
            and (not self.sources or meta.get("source") in self.sources)
            and (not self.file_types or meta.get("file_type") in self.file_types)
        )

    def key(self) -> str:
        """A canonical text of what the filter matches (JSON, each list sorted and without
        repeats): equal for equal filters, different for different ones, whatever the
        values contain (a `,` or `|` in a file name included)."""
        fields = {
            name: sorted(set(value)) if isinstance(value, list) else value
            for name, value in dataclasses.asdict(self).items()
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class IndexSpec:
    """What built a collection. Vectors of another model are meaningless in it."""

    model: str
    dimension: int
    chunking: str


class VectorStore(Protocol):
    name: str

    @property
    def spec(self) -> IndexSpec | None:
        """The model and chunking the collection was built with, if recorded."""

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        """Insert or replace chunks by id, with their unit-length embeddings."""

    def delete(self, chunk_ids: Sequence[str]) -> None:
        """Remove chunks by id; unknown ids are ignored."""

    def query(
        self, embedding: np.ndarray, k: int, filters: SearchFilters | None = None
    ) -> list[tuple[Chunk, float]]:
        """The k nearest chunks with their cosine similarity, best first."""

    def get(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """Chunks by id, in the order given, skipping unknown ids."""

    def embeddings(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings by id."""

    def ids(self) -> list[str]:
        """Every chunk id in the collection."""

    def count(self) -> int: ...


class LexicalIndex(Protocol):
    def upsert(self, chunks: Sequence[Chunk]) -> None:
        """Insert or replace chunks by id."""

    def delete(self, chunk_ids: Sequence[str]) -> None:
        """Remove chunks by id; unknown ids are ignored."""

    def search(
        self, query: str, k: int, filters: SearchFilters | None = None
    ) -> list[tuple[Chunk, float]]:
        """The k best keyword matches with their BM25 scores, best first; [] when no query
        term occurs in the corpus."""

    def coverage(self, query: str, texts: Sequence[str]) -> list[float]:
        """Per text, the IDF-weighted share of the query's terms it holds, 0 to 1 (all 0
        for an empty index or query): how well the words of the question match it."""

    def ids(self) -> list[str]: ...

    def count(self) -> int: ...

    def generation(self) -> int:
        """A number that changes whenever the index content changes (cache invalidation)."""


@dataclass
class Retrieval:
    """What a search found: the ranked passages and what the answer step decides with."""

    hits: list[ScoredChunk]
    query_embedding: np.ndarray
    # Cosine similarity of the question's nearest chunk in the whole (filtered) index:
    # whether anything relevant exists at all, whatever the fused ranking put first.
    nearest: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The evidence the not-found decision weighs besides `nearest` (retrieval/hybrid.py):
    # `coverage` (keyword match of the question's rare words in the best keyword hits),
    # `sentence` (the same in the top passage's best sentence), `agreement` (whether both
    # rankings put the top passage high) and, with a reranker, `rerank` (its top score).
    signals: dict[str, float] = field(default_factory=dict)

    @property
    def best_relevance(self) -> float:
        return max((h.relevance or 0.0 for h in self.hits), default=0.0)


class SentenceVectors(Protocol):
    """The sentence vectors ingestion kept per chunk (retrieval/sentences.py): one unit row
    per sentence of the chunk's text (`docqa.text.passage_sentences`), a zero row where none
    was kept."""

    def get(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The kept vectors of those chunks that have some (others are left out)."""


class Reranker(Protocol):
    """Scores question-passage pairs jointly (a cross-encoder): slower than the two
    rankings, so it only reorders the best fused candidates."""

    model_id: str

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One relevance score per text, higher is better; an empty input gives shape (0,)."""


class Retriever(Protocol):
    """Question in, ranked passages out, from the index that serves now."""

    def retrieve(
        self, query: str, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> Retrieval:
        """The `top_k` best passages (the configured default when None), restricted by
        `filters`; an empty index or a filter matching nothing gives no hits, not an error.

        :raises IndexMismatchError: the index was built with another embedding model.
        """

    def index_version(self) -> str:
        """Changes whenever what a search can find changes (a write, a re-index switch):
        answers cached under one version are never served under another."""
