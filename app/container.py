"""`Docqa`: each stage's parts built from settings, once, on first use.

Backends are chosen here and nowhere else (Chroma on disk or a server, SQLite or
PostgreSQL, the extractive answerer or vLLM, an in-process or a Redis cache). Any part can
be handed in instead (a test's shared embedding model, a worker that has one loaded), and
stage functions are given the parts they use, never the container.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from docqa.domain import DEFAULT_COLLECTION, check_collection_name
from docqa.errors import DocqaError
from docqa.settings import Settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from evals.store import EvalStore
    from evals.traffic import TrafficRecorder
    from inference.answering import AnsweringService
    from inference.cache import Cache
    from inference.protocols import Generator
    from ingestion.chunk import Chunker
    from ingestion.jobs import JobStore
    from ingestion.parse import Parser
    from ingestion.pipeline import Indexer
    from ingestion.records import RecordStore
    from ingestion.reindex import Reindexer
    from retrieval.index import IndexCatalog, ServingRetriever
    from retrieval.protocols import Embedder, IndexSpec, Retriever
    from retrieval.rerank import CrossEncoderReranker

T = TypeVar("T")

# What every collection (tenant) of one process shares: the models, the job queue, the
# answer cache and the eval store. Each collection has its own records and serving index.
# Collections whose parts stay open in one process; a request naming more costs a rebuild
# of the least recently used one's records and index handles, never unbounded memory.
_MAX_OPEN_COLLECTIONS = 256

_SHARED_PARTS = frozenset(
    {
        "embedder",
        "chunker",
        "parser",
        "reranker",
        "jobs",
        "extractive",
        "generator",
        "cache",
        "eval_store",
        "traffic",
    }
)


class Docqa:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        records: RecordStore | None = None,
        chroma: ClientAPI | None = None,
        generator: Generator | None = None,
        cache: Cache | None = None,
        eval_store: EvalStore | None = None,
        retriever: Retriever | None = None,
        parser: Parser | None = None,
    ) -> None:
        """:param embedder: an embedding model already loaded (the settings' model
        otherwise); the other parts likewise replace what the settings would build.
        :param parser: a file parser (the process's shared parser worker otherwise)."""
        self.settings = settings
        self._lock = threading.RLock()
        self._parts: dict[str, Any] = {
            name: part
            for name, part in (
                ("embedder", embedder),
                ("records", records),
                ("chroma", chroma),
                ("generator", generator),
                ("cache", cache),
                ("eval_store", eval_store),
                ("retriever", retriever),
                ("parser", parser),
            )
            if part is not None
        }
        self.collection_name = DEFAULT_COLLECTION
        self._root = self
        self._tenants: dict[str, Docqa] = {}

    def for_collection(self, name: str | None) -> Docqa:
        """The parts of one collection (tenant): its own records and serving index (alias
        `<DOCQA_COLLECTION>.<name>`), sharing this process's models, cache and job queue.
        The default collection is the one docqa always had.

        :raises DocqaError: not a collection name.
        """
        root = self._root
        name = name or DEFAULT_COLLECTION
        if name == DEFAULT_COLLECTION:
            return root
        try:
            check_collection_name(name)
        except ValueError as exc:
            raise DocqaError(str(exc), param="collection") from exc
        with root._lock:
            child = root._tenants.get(name)
            if child is None:
                alias = f"{root.settings.collection}.{name}"
                child = Docqa(root.settings.model_copy(update={"collection": alias}))
                child.collection_name = name
                child._root = root
                if len(root._tenants) >= _MAX_OPEN_COLLECTIONS:
                    # Forget the longest unused (it is rebuilt, cheaply, if named again).
                    root._tenants.pop(next(iter(root._tenants)))
                root._tenants[name] = child
            else:
                root._tenants[name] = root._tenants.pop(name)  # most recently used last
            return child

    def _part(self, name: str, build: Callable[[], T]) -> T:
        """The part called `name`, built on first use (at most once, across threads)."""
        if self._root is not self and name in _SHARED_PARTS:
            return getattr(self._root, name)  # type: ignore[no-any-return]
        part = self._parts.get(name)
        if part is None:
            with self._lock:
                part = self._parts.get(name)
                if part is None:
                    part = self._parts[name] = build()
        return part  # type: ignore[no-any-return]

    # -- the ground floor of every stage ---------------------------------------------

    @property
    def records(self) -> RecordStore:
        from ingestion.records import RecordStore

        return self._part(
            "records",
            lambda: RecordStore(self.settings.resolved_database_url, self.collection_name),
        )

    @property
    def jobs(self) -> JobStore:
        from ingestion.jobs import JobStore

        return self._part("jobs", lambda: JobStore(self.settings.resolved_database_url))

    @property
    def embedder(self) -> Embedder:
        return self._part("embedder", lambda: build_embedder(self.settings))

    @property
    def chunker(self) -> Chunker:
        from ingestion.chunk import Chunker

        return self._part("chunker", lambda: Chunker(self.embedder, self.settings.chunking))

    @property
    def parser(self) -> Parser:
        """Where files are parsed: a worker process under the parse budget, shared by
        every Docqa of this process (DOCQA_INGESTION__ISOLATE_PARSING), or this process."""
        from ingestion.budget import ParseBudget
        from ingestion.isolation import InProcessParser, shared_parser

        def build() -> Parser:
            conf = self.settings.ingestion
            budget = ParseBudget.of(conf)
            if conf.isolate_parsing:
                return shared_parser(budget, pdf_strategy=conf.pdf_strategy, parser=conf.parser)
            return InProcessParser(budget, pdf_strategy=conf.pdf_strategy, parser=conf.parser)

        return self._part("parser", build)

    # -- the serving index (retrieval) -------------------------------------------------

    def spec(self) -> IndexSpec:
        """What this process builds and reads an index with: model, dimension, chunking."""
        from retrieval.protocols import IndexSpec

        return IndexSpec(
            model=self.embedder.model_id,
            dimension=self.embedder.dimension,
            chunking=self.chunker.fingerprint,
        )

    @property
    def indexes(self) -> IndexCatalog:
        from retrieval.aliases import AliasStore
        from retrieval.index import IndexCatalog

        def build() -> IndexCatalog:
            chroma = self._parts.get("chroma")
            factory = (lambda: chroma) if chroma is not None else None
            if self._root is not self:
                factory = lambda: self._root.indexes.chroma  # noqa: E731 - one client per process
            return IndexCatalog(
                self.settings,
                aliases=AliasStore(self.settings.resolved_database_url),
                spec=self.spec,
                chroma=factory,
            )

        return self._part("indexes", build)

    @property
    def reranker(self) -> CrossEncoderReranker | None:
        """The cross-encoder of DOCQA_RETRIEVAL__RERANKER (None: no reranking stage)."""
        from retrieval.rerank import open_reranker

        return self._part("reranker", lambda: open_reranker(self.settings.retrieval))

    @property
    def retriever(self) -> ServingRetriever:
        from retrieval.index import ServingRetriever

        return self._part(
            "retriever",
            lambda: ServingRetriever(
                self.indexes, self.embedder, self.settings.retrieval, reranker=self.reranker
            ),
        )

    # -- writing (ingestion) -----------------------------------------------------------

    def indexer(self) -> Indexer:
        """An indexer for the collection that serves now (checked to be chunked as these
        settings chunk)."""
        from ingestion.pipeline import Indexer

        index = self.indexes.current()
        self.indexes.check_chunking(index)
        return Indexer(
            records=self.records,
            index=index,
            embedder=self.embedder,
            chunker=self.chunker,
            settings=self.settings.ingestion,
            parser=self.parser,
            uploads_dir=self.settings.uploads_dir,
        )

    def index_fingerprint(self) -> str:
        """What documents indexed now are made with (recorded on each, compared by sync)."""
        from ingestion.pipeline import index_fingerprint

        return index_fingerprint(self.embedder.model_id, self.chunker.fingerprint)

    def reindexer(self) -> Reindexer:
        from ingestion.reindex import Reindexer

        return Reindexer(
            indexes=self.indexes,
            records=self.records,
            embedder=self.embedder,
            chunker=self.chunker,
            settings=self.settings,
            parser=self.parser,
        )

    # -- answering (inference) ---------------------------------------------------------

    @property
    def extractive(self) -> Generator:
        from inference.extractive import ExtractiveGenerator

        return self._part(
            "extractive", lambda: ExtractiveGenerator(self.embedder, self.settings.answer)
        )

    @property
    def generator(self) -> Generator:
        def build() -> Generator:
            if self.settings.answer.generator == "vllm":
                from inference.vllm import VLLMGenerator

                return VLLMGenerator(self.settings, fallback=self.extractive)
            return self.extractive

        return self._part("generator", build)

    @property
    def cache(self) -> Cache:
        def build() -> Cache:
            from inference.cache import LocalCache, RedisCache

            if self.settings.redis_url:
                return RedisCache(self.settings.redis_url)
            return LocalCache()

        return self._part("cache", build)

    @property
    def answering(self) -> AnsweringService:
        from inference.answering import AnsweringService

        return self._part(
            "answering",
            lambda: AnsweringService(
                retriever=self.retriever,
                generator=self.generator,
                cache=self.cache,
                settings=self.settings.answer,
                default_top_k=self.settings.retrieval.top_k,
                question_log=self.traffic,
                cache_scope={
                    "collection": self.collection_name,
                    **self.settings.retrieval.model_dump(mode="json"),
                },
                embedder=self.embedder,
            ),
        )

    # -- evaluation --------------------------------------------------------------------

    @property
    def eval_store(self) -> EvalStore:
        """Eval runs and recorded live questions (DOCQA_EVALS__DATABASE_URL)."""
        from evals.store import open_store

        return self._part("eval_store", lambda: open_store(self.settings))

    @property
    def traffic(self) -> TrafficRecorder:
        """Records served questions for drift (DOCQA_EVALS__RECORD_TRAFFIC); never blocks."""
        from evals.traffic import TrafficRecorder

        return self._part(
            "traffic", lambda: TrafficRecorder(self.settings, open_store=lambda: self.eval_store)
        )


def build_embedder(settings: Settings) -> Embedder:
    """The embedding backend the settings name (not loaded yet: that happens on first use)."""
    conf = settings.embedding
    if conf.backend == "onnx-int8":
        from ingestion.onnx_embed import OnnxInt8Embedder

        return OnnxInt8Embedder(conf, conf.onnx_dir or model_cache_dir(settings))
    from ingestion.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(conf)


def model_cache_dir(settings: Settings) -> Path:
    """Where exported models are kept when embedding.onnx_dir is unset: the user's cache
    folder, so every data folder, process and test reuses one export (it takes ~10 s); the
    data folder when the cache folder cannot be created (a read-only home in a container)."""
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base).expanduser() / "docqa" / "models"
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except (OSError, RuntimeError):  # RuntimeError: no home directory to expand
        pass
    return settings.data_dir / "models"
