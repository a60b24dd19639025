"""Chroma as the vector store: embedded on disk by default, a Chroma server when configured.

Both modes go through the same `chromadb` client API, so there is one code path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from docqa.domain import Chunk
from docqa.errors import ConfigurationError, ServiceUnavailable
from docqa.settings import Settings
from retrieval.protocols import IndexSpec, SearchFilters

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


def open_chroma(settings: Settings) -> ClientAPI:
    """A Chroma client: HttpClient when DOCQA_CHROMA_URL is set, else on-disk PersistentClient.

    :raises ServiceUnavailable: the Chroma server does not answer.
    """
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(
                f"DOCQA_CHROMA_URL={settings.chroma_url!r} is not an http(s) URL like "
                "http://localhost:8000"
            )
        try:
            return chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:
            raise ServiceUnavailable(
                f"Chroma server at {settings.chroma_url} is not reachable: {exc}"
            ) from exc
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)


def _where(filters: SearchFilters | None) -> dict[str, Any] | None:
    if not filters:
        return None
    clauses: list[dict[str, Any]] = []
    for key, values in (
        ("document_id", filters.document_ids),
        ("source", filters.sources),
        ("file_type", filters.file_types),
    ):
        if values:
            clauses.append({key: {"$in": list(values)}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaVectorStore:
    """One Chroma collection in cosine space, holding chunks and their embeddings."""

    def __init__(self, client: ClientAPI, name: str, *, create: IndexSpec | None = None) -> None:
        self.client = client
        self.name = name
        if create is not None:
            self.collection: Collection = client.get_or_create_collection(
                name,
                metadata={
                    "docqa_model": create.model,
                    "docqa_dimension": create.dimension,
                    "docqa_chunking": create.chunking,
                },
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        else:
            self.collection = client.get_collection(name, embedding_function=None)
        self._batch = max(1, int(client.get_max_batch_size()))

    @property
    def spec(self) -> IndexSpec | None:
        meta = self.collection.metadata or {}
        if "docqa_model" not in meta:
            return None
        return IndexSpec(
            model=str(meta["docqa_model"]),
            dimension=int(meta["docqa_dimension"]),
            chunking=str(meta.get("docqa_chunking", "")),
        )

    def _batches(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self._batch):
            yield slice(start, start + self._batch)

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        if not chunks:
            return
        for part in self._batches(len(chunks)):
            batch = chunks[part]
            self.collection.upsert(
                ids=[c.chunk_id for c in batch],
                embeddings=embeddings[part],
                documents=[c.text for c in batch],
                metadatas=[c.metadata() for c in batch],  # type: ignore[misc]
            )

    def delete(self, chunk_ids: Sequence[str]) -> None:
        ids = list(chunk_ids)
        for part in self._batches(len(ids)):
            self.collection.delete(ids=ids[part])

    def query(
        self, embedding: np.ndarray, k: int, filters: SearchFilters | None = None
    ) -> list[tuple[Chunk, float]]:
        try:
            result = self.collection.query(
                query_embeddings=[embedding],
                n_results=k,
                where=_where(filters),
                include=["documents", "metadatas", "distances"],
            )
        except Exception as exc:
            # An empty collection or a filter matching nothing is not a failure.
            if "Nothing found" in str(exc) or "no elements" in str(exc).lower():
                return []
            raise
        ids = result["ids"][0]
        docs = (result["documents"] or [[]])[0]
        metas = (result["metadatas"] or [[]])[0]
        dists = (result["distances"] or [[]])[0]
        return [
            (Chunk.from_stored(i, d or "", dict(m or {})), 1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def get(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        if not chunk_ids:
            return []
        found: dict[str, Chunk] = {}
        ids = list(chunk_ids)
        for part in self._batches(len(ids)):
            result = self.collection.get(ids=ids[part], include=["documents", "metadatas"])
            for i, d, m in zip(
                result["ids"], result["documents"] or [], result["metadatas"] or [], strict=True
            ):
                found[i] = Chunk.from_stored(i, d or "", dict(m or {}))
        return [found[i] for i in ids if i in found]

    def embeddings(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not chunk_ids:
            return {}
        result = self.collection.get(ids=list(chunk_ids), include=["embeddings"])
        vectors = result["embeddings"]
        if vectors is None:
            return {}
        return {
            i: np.asarray(v, dtype=np.float32) for i, v in zip(result["ids"], vectors, strict=True)
        }

    def ids(self) -> list[str]:
        out: list[str] = []
        total = self.count()
        for offset in range(0, total, self._batch):
            out.extend(self.collection.get(include=[], limit=self._batch, offset=offset)["ids"])
        return out

    def count(self) -> int:
        return int(self.collection.count())
