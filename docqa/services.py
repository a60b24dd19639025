"""The composition root: builds each stage's pieces from settings, once, on first use.

The API, the CLI, the DAG tasks and the eval runner all hold one `Docqa` and call the
stage functions through it, so there is one place where backends are chosen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from docqa.domain import NOT_FOUND_ANSWER, Answer, Citation
from docqa.errors import IndexMismatchError
from docqa.settings import Settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from evals.store import EvalStore
    from evals.traffic import TrafficRecorder
    from inference.cache import Cache
    from inference.protocols import AnswerEvent, Generator
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
            from inference.vllm import VLLMGenerator

            return VLLMGenerator(self.settings, fallback=self.extractive)
        return self.extractive

    @cached_property
    def extractive(self) -> Generator:
        from inference.extractive import ExtractiveGenerator

        return ExtractiveGenerator(self.embedder, self.settings.answer)

    @cached_property
    def traffic(self) -> TrafficRecorder:
        """Records served questions for drift (DOCQA_EVALS__RECORD_TRAFFIC); never blocks."""
        from evals.traffic import TrafficRecorder

        return TrafficRecorder(self.settings, open_store=lambda: self.eval_store)

    @cached_property
    def eval_store(self) -> EvalStore:
        """Eval runs and recorded live questions (DOCQA_EVALS__DATABASE_URL)."""
        from evals.runner import open_store

        return open_store(self.settings)

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
        key = self._cache_key(index, question, top_k, filters)
        use_cache = use_cache and bool(self.settings.answer.cache_ttl_s)
        if use_cache and (cached := self._cached_answer(key, question, t0)) is not None:
            return cached
        retrieval = self.search(question, top_k=top_k, filters=filters)
        t1 = time.perf_counter()
        if self._relevant(retrieval):
            answer = self.generator.generate(question, retrieval.hits)
        else:
            answer = _not_found()
        self._settle(answer, question, retrieval, key if use_cache else None, t0, t1)
        return answer

    async def ask_stream(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        use_cache: bool = True,
    ) -> AsyncIterator[AnswerEvent]:
        """`ask` as events: answer deltas, then one final event with the answer (citations,
        usage, timings). Cache and not-found behave as in `ask`. Closing the iterator early
        (a client that went away) cancels the generation upstream."""
        t0 = time.perf_counter()
        index = await asyncio.to_thread(self.index)
        key = await asyncio.to_thread(self._cache_key, index, question, top_k, filters)
        use_cache = use_cache and bool(self.settings.answer.cache_ttl_s)
        if use_cache:
            cached = await asyncio.to_thread(self._cached_answer, key, question, t0)
            if cached is not None:
                async for event in _answered(cached):
                    yield event
                return
        retrieval = await asyncio.to_thread(self.search, question, top_k=top_k, filters=filters)
        t1 = time.perf_counter()
        if self._relevant(retrieval):
            generator = await asyncio.to_thread(lambda: self.generator)
            astream = getattr(generator, "astream", None)
            events = (
                astream(question, retrieval.hits)
                if astream is not None
                else _in_thread(generator.stream(question, retrieval.hits))
            )
        else:
            events = _answered(_not_found())
        first_delta: float | None = None
        async for event in events:
            if event.kind == "delta" and first_delta is None:
                first_delta = time.perf_counter()
            if event.kind == "final" and event.answer is not None:
                if first_delta is not None:
                    event.answer.timings_ms["first_delta"] = _ms(first_delta - t0)
                await asyncio.to_thread(
                    self._settle,
                    event.answer,
                    question,
                    retrieval,
                    key if use_cache else None,
                    t0,
                    t1,
                )
            yield event

    # -- what ask and ask_stream share ---------------------------------------------------

    def _cached_answer(self, key: str, question: str, t0: float) -> Answer | None:
        cached = self.cache.get(key)
        if cached is None:
            return None
        answer = answer_from_dict(cached)
        answer.timings_ms = {"total": _ms(time.perf_counter() - t0)}
        answer.cached = True
        self.traffic.record(question, answer, None)
        return answer

    def _relevant(self, retrieval: Retrieval) -> bool:
        """Whether the passages are worth answering from; otherwise the generator is not
        asked and the answer says nothing was found."""
        return bool(retrieval.hits) and retrieval.nearest >= self.settings.answer.min_relevance

    def _settle(
        self,
        answer: Answer,
        question: str,
        retrieval: Retrieval,
        cache_key: str | None,
        t0: float,
        t1: float,
    ) -> None:
        """Stamp the stage timings on a fresh answer, cache it (never a degraded one) and
        record the question for drift."""
        t2 = time.perf_counter()
        answer.timings_ms = {
            **answer.timings_ms,
            "retrieve": _ms(t1 - t0),
            "generate": _ms(t2 - t1),
            "total": _ms(t2 - t0),
        }
        if cache_key is not None and not answer.degraded:
            self.cache.set(cache_key, dataclasses.asdict(answer), self.settings.answer.cache_ttl_s)
        self.traffic.record(question, answer, retrieval)

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
            self._generator_key(),
        )

    def _generator_key(self) -> Any:
        """What else shapes an answer: the LLM, its prompt and sampling (vllm only)."""
        if self.settings.answer.generator != "vllm":
            return ""
        from inference.prompt import PROMPT_VERSION

        vllm = self.settings.vllm
        return [PROMPT_VERSION, vllm.model, vllm.temperature, vllm.max_answer_tokens]


def _not_found() -> Answer:
    return Answer(text=NOT_FOUND_ANSWER, found=False, citations=[])


def answer_from_dict(data: dict[str, Any]) -> Answer:
    data = dict(data)
    data["citations"] = [Citation(**c) for c in data.get("citations", [])]
    return Answer(**data)


async def _answered(answer: Answer) -> AsyncIterator[AnswerEvent]:
    from inference.protocols import AnswerEvent

    yield AnswerEvent(kind="delta", text=answer.text)
    yield AnswerEvent(kind="final", answer=answer)


async def _in_thread(events: Iterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
    """A synchronous generator's events, each computed in a worker thread."""
    end = object()
    try:
        while (event := await asyncio.to_thread(next, events, end)) is not end:
            yield event  # type: ignore[misc]
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
