"""The composition root: builds each stage's pieces from settings, once, on first use.

The API, the CLI, the DAG tasks and the eval runner all hold one `Docqa` and call the
stage functions through it, so there is one place where backends are chosen.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from docqa.domain import NOT_FOUND_ANSWER, Answer, Citation
from docqa.errors import IndexMismatchError
from docqa.settings import Settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from inference.cache import Cache
    from inference.protocols import Generator
    from ingestion.chunk import Chunker
    from ingestion.embed import SentenceTransformerEmbedder
    from ingestion.pipeline import Indexer
    from ingestion.records import RecordStore
    from retrieval.hybrid import HybridRetriever, Retrieval
    from retrieval.lexical import BM25Index
    from retrieval.protocols import IndexSpec, SearchFilters
    from retrieval.vector_store import ChromaVectorStore


@dataclasses.dataclass
class ServingIndex:
    """The collection queries are served from, with its BM25 twin."""

    collection: str
    vectors: ChromaVectorStore
    lexical: BM25Index


class Docqa:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._index: ServingIndex | None = None

    # -- stage pieces ----------------------------------------------------------------

    @cached_property
    def records(self) -> RecordStore:
        from ingestion.records import RecordStore

        return RecordStore(self.settings.resolved_database_url)

    @cached_property
    def embedder(self) -> SentenceTransformerEmbedder:
        from ingestion.embed import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(self.settings.embedding)

    @cached_property
    def chunker(self) -> Chunker:
        from ingestion.chunk import Chunker

        return Chunker(self.embedder, self.settings.chunking)

    @cached_property
    def chroma(self) -> ClientAPI:
        from retrieval.vector_store import open_chroma

        return open_chroma(self.settings)

    @cached_property
    def generator(self) -> Generator:
        if self.settings.answer.generator == "vllm":
            from inference.vllm import VLLMGenerator  # type: ignore[import-not-found]

            return VLLMGenerator(self.settings, fallback=self.extractive)  # type: ignore[no-any-return]
        return self.extractive

    @cached_property
    def extractive(self) -> Generator:
        from inference.extractive import ExtractiveGenerator

        return ExtractiveGenerator(self.embedder, self.settings.answer)

    @cached_property
    def cache(self) -> Cache:
        from inference.cache import LocalCache, RedisCache

        if self.settings.redis_url:
            return RedisCache(self.settings.redis_url)
        return LocalCache()

    # -- the serving index -----------------------------------------------------------

    def current_spec(self) -> IndexSpec:
        from retrieval.protocols import IndexSpec

        return IndexSpec(
            model=self.embedder.model_id,
            dimension=self.embedder.dimension,
            chunking=self.chunker.fingerprint,
        )

    def new_collection_name(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        return f"{self.settings.collection}-{stamp}"

    def open_index(self, collection: str, *, create: bool = False) -> ServingIndex:
        from retrieval.lexical import BM25Index
        from retrieval.vector_store import ChromaVectorStore

        vectors = ChromaVectorStore(
            self.chroma, collection, create=self.current_spec() if create else None
        )
        lexical = BM25Index(
            self.settings.resolved_database_url, collection, self.settings.data_dir / "bm25"
        )
        return ServingIndex(collection, vectors, lexical)

    def index(self) -> ServingIndex:
        """The collection the alias points at now (created on first use). Re-read on every
        call so a switch made by another process (a re-index) is picked up."""
        collection = self.records.get_alias(self.settings.collection)
        with self._lock:
            if self._index is not None and self._index.collection == collection:
                return self._index
            if collection is None:
                collection = self.new_collection_name()
                self._index = self.open_index(collection, create=True)
                self.records.set_alias(self.settings.collection, collection)
            else:
                self._index = self.open_index(collection)
            self._check_model(self._index)
            return self._index

    def _check_model(self, index: ServingIndex) -> None:
        spec = index.vectors.spec
        if spec is None:
            return
        if spec.model != self.embedder.model_id or spec.dimension != self.embedder.dimension:
            raise IndexMismatchError(
                f"index {index.collection!r} was built with embedding model {spec.model!r} "
                f"({spec.dimension} dimensions) but this process is configured with "
                f"{self.embedder.model_id!r} ({self.embedder.dimension}). Set "
                f"DOCQA_EMBEDDING__MODEL back, or rebuild the index with `docqa reindex`."
            )

    def indexer(self) -> Indexer:
        from ingestion.pipeline import Indexer

        index = self.index()
        spec = index.vectors.spec
        if spec is not None and spec.chunking != self.chunker.fingerprint:
            raise IndexMismatchError(
                f"index {index.collection!r} was chunked with {spec.chunking} but the "
                f"settings now say {self.chunker.fingerprint}; mixing both would make results "
                "inconsistent. Rebuild with `docqa reindex`, or restore the chunking settings."
            )
        return Indexer(
            records=self.records,
            vectors=index.vectors,
            lexical=index.lexical,
            embedder=self.embedder,
            chunker=self.chunker,
            settings=self.settings.ingestion,
        )

    def retriever(self) -> HybridRetriever:
        from retrieval.hybrid import HybridRetriever

        index = self.index()
        return HybridRetriever(self.embedder, index.vectors, index.lexical, self.settings.retrieval)

    # -- the two questions users ask ---------------------------------------------------

    def search(
        self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> Retrieval:
        return self.retriever().retrieve(query, top_k, filters)

    def ask(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        use_cache: bool = True,
    ) -> Answer:
        """Retrieve, then answer from the passages, or say plainly that nothing relevant
        was found (no generator call then)."""
        t0 = time.perf_counter()
        index = self.index()
        ttl = self.settings.answer.cache_ttl_s
        key = self._cache_key(index, question, top_k, filters)
        if use_cache and ttl:
            cached = self.cache.get(key)
            if cached is not None:
                answer = answer_from_dict(cached)
                answer.timings_ms = {"total": _ms(time.perf_counter() - t0)}
                answer.cached = True
                return answer
        retrieval = self.search(question, top_k=top_k, filters=filters)
        t1 = time.perf_counter()
        if not retrieval.hits or retrieval.nearest < self.settings.answer.min_relevance:
            answer = Answer(text=NOT_FOUND_ANSWER, found=False, citations=[])
        else:
            answer = self.generator.generate(question, retrieval.hits)
        t2 = time.perf_counter()
        answer.timings_ms = {
            "retrieve": _ms(t1 - t0),
            "generate": _ms(t2 - t1),
            "total": _ms(t2 - t0),
        }
        if use_cache and ttl and not answer.degraded:
            self.cache.set(key, dataclasses.asdict(answer), ttl)
        return answer

    def _cache_key(
        self,
        index: ServingIndex,
        question: str,
        top_k: int | None,
        filters: SearchFilters | None,
    ) -> str:
        from inference.cache import cache_key

        return cache_key(
            index.collection,
            index.lexical.generation(),
            " ".join(question.split()).lower(),
            top_k or self.settings.retrieval.top_k,
            filters.key() if filters else "",
            self.settings.answer.model_dump(),
            self.settings.retrieval.model_dump(),
        )


def answer_from_dict(data: dict[str, Any]) -> Answer:
    data = dict(data)
    data["citations"] = [Citation(**c) for c in data.get("citations", [])]
    return Answer(**data)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
