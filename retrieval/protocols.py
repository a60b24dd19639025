"""The indexes retrieval searches and ingestion writes: the boundary between the two stages.

Both are keyed by chunk id. Writes are idempotent: upserting an id again replaces it,
deleting an id that is absent is not an error. Neither raises for an empty batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from docqa.domain import Chunk


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
        return "|".join(
            ",".join(sorted(v)) for v in (self.document_ids, self.sources, self.file_types)
        )


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

    def ids(self) -> list[str]: ...

    def count(self) -> int: ...

    def generation(self) -> int:
        """A number that changes whenever the index content changes (cache invalidation)."""
