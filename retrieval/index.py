"""The serving index: the collection queries are answered from, kept as one object.

A `ServingIndex` is one collection in both stores, the vectors (Chroma) and the keyword
index (BM25), and every write goes to both together. An `IndexCatalog` knows the
collections of one alias: how they are named (alias + UTC timestamp), opened and created,
which one serves (the alias row), and whether this process's embedding model and chunking
match the one that serves. Ingestion writes through it, retrieval reads through it, and a
re-index builds a new collection beside the serving one and switches the alias.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from docqa.domain import Chunk
from docqa.errors import ConfigurationError, IndexMismatchError
from docqa.settings import RetrievalSettings, Settings
from retrieval.aliases import AliasState, AliasStore
from retrieval.hybrid import HybridRetriever
from retrieval.lexical import BM25Index
from retrieval.protocols import (
    Embedder,
    IndexSpec,
    LexicalIndex,
    Reranker,
    Retrieval,
    SearchFilters,
    SentencePooling,
    VectorStore,
)
from retrieval.sentences import SentenceVectorStore
from retrieval.vector_store import ChromaVectorStore, open_chroma

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from sqlalchemy import Connection

T = TypeVar("T")

_STAMP_FORMAT = "%Y%m%d%H%M%S%f"


@dataclass
class ServingIndex:
    """One collection: its vectors and its keyword twin, written together, and the
    sentence vectors the extractive answerer reads (retrieval/sentences.py)."""

    collection: str
    vectors: VectorStore
    lexical: LexicalIndex
    sentences: SentenceVectorStore | None = None

    @property
    def spec(self) -> IndexSpec | None:
        return self.vectors.spec

    def upsert(
        self,
        chunks: Sequence[Chunk],
        embeddings: np.ndarray,
        sentence_vectors: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Insert or replace chunks in both stores (vectors first: a chunk only the keyword
        index knows would be found without a similarity to judge it by). Sentence vectors
        (chunk id -> one row per sentence) go first of all, so a chunk that can be found
        has them."""
        if sentence_vectors and self.sentences is not None:
            self.sentences.upsert(sentence_vectors)
        self.vectors.upsert(chunks, embeddings)
        self.lexical.upsert(chunks)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        """Remove chunks from both stores; unknown ids are ignored."""
        if not chunk_ids:
            return
        self.vectors.delete(chunk_ids)
        self.lexical.delete(chunk_ids)
        if self.sentences is not None:
            self.sentences.delete(chunk_ids)

    def version(self) -> str:
        """Changes with every write and every switch (answer cache keys, eval provenance)."""
        return f"{self.collection}@{self.lexical.generation()}"


class IndexCatalog:
    """The collections of one alias (`DOCQA_COLLECTION`) and the one that serves."""

    def __init__(
        self,
        settings: Settings,
        *,
        aliases: AliasStore,
        spec: Callable[[], IndexSpec],
        chroma: Callable[[], ClientAPI] | None = None,
    ) -> None:
        """:param spec: the model and chunking of this process (read when a collection is
        created or checked; computing it loads the embedding model).
        :param chroma: the Chroma client to use (default: opened from the settings)."""
        self.settings = settings
        self.alias = settings.collection
        self.aliases = aliases
        self._spec = spec
        self._chroma_factory = chroma
        self._chroma: ClientAPI | None = None
        self._lock = threading.RLock()
        self._serving: ServingIndex | None = None

    @property
    def chroma(self) -> ClientAPI:
        with self._lock:
            if self._chroma is None:
                if self._chroma_factory is not None:
                    self._chroma = self._chroma_factory()
                else:
                    self._chroma = open_chroma(self.settings)
            return self._chroma

    # -- naming ----------------------------------------------------------------------

    def new_name(self) -> str:
        return f"{self.alias}-{datetime.now(UTC).strftime(_STAMP_FORMAT)}"

    def created_at(self, name: str) -> datetime | None:
        """When a collection of this alias was created (from its name); None for others."""
        match = re.fullmatch(re.escape(self.alias) + r"-(\d{20})", name)
        if not match:
            return None
        return datetime.strptime(match.group(1), _STAMP_FORMAT).replace(tzinfo=UTC)

    def collections(self) -> list[str]:
        """Every collection of this alias in the vector store, serving or not, sorted."""
        return sorted(
            c.name for c in self.chroma.list_collections() if self.created_at(c.name) is not None
        )

    # -- open, create, drop ----------------------------------------------------------

    def open(self, name: str, *, create: bool = False) -> ServingIndex:
        """A collection of the vector store with its keyword twin.

        :param create: create it (recording this process's model and chunking) if absent.
        """
        vectors = ChromaVectorStore(self.chroma, name, create=self._spec() if create else None)
        url = self.settings.resolved_database_url
        lexical = BM25Index(url, name, self.settings.data_dir / "bm25")
        return ServingIndex(name, vectors, lexical, SentenceVectorStore(url, name))

    def open_existing(self, name: str | None) -> ServingIndex | None:
        """The collection, or None when there is no such collection (nothing to read)."""
        if name is None:
            return None
        try:
            return self.open(name)
        except Exception:  # noqa: BLE001 - Chroma raises its own types for a missing one
            return None

    def drop(self, name: str) -> None:
        """Delete a collection and its keyword index; a missing one is not an error.

        :raises IndexMismatchError: it is the serving collection.
        """
        if name == self.aliases.get(self.alias):
            raise IndexMismatchError(f"refusing to drop {name}: it is the serving collection")
        with contextlib.suppress(Exception):
            self.chroma.delete_collection(name)
        url = self.settings.resolved_database_url
        BM25Index(url, name, self.settings.data_dir / "bm25").drop()
        SentenceVectorStore(url, name).drop()

    # -- the alias -------------------------------------------------------------------

    def serving_name(self) -> str | None:
        return self.aliases.get(self.alias)

    def state(self) -> AliasState | None:
        return self.aliases.state(self.alias)

    def existing(self) -> ServingIndex | None:
        """The collection that serves, or None before anything was written: reading never
        creates one (naming a collection that does not exist costs nothing)."""
        name = self.aliases.get(self.alias)
        return None if name is None else self._serving_index(name)

    def current(self) -> ServingIndex:
        """The collection the alias points at now, created on first use. The alias is
        read on every call, so a switch made by another process is picked up.

        :raises IndexMismatchError: it was built with another embedding model.
        """
        return self._serving_index(self.aliases.get(self.alias))

    def _serving_index(self, name: str | None) -> ServingIndex:
        """The index called `name` (read from the alias once by the caller), opened once
        while it serves; None: create the first one."""
        with self._lock:
            if self._serving is not None and self._serving.collection == name:
                return self._serving
            if name is None:
                name = self.new_name()
                index = self.open(name, create=True)
                # Two processes may both find no collection (the workers of `docqa serve
                # --workers N` on their first upload): the first to record one wins, and
                # the other writes there too instead of into a collection nothing reads.
                first = self.aliases.set_first(self.alias, name)
                if first != name:
                    self.drop(name)
                    name, index = first, self.open(first)
            else:
                index = self.open(name)
            self.check_model(index)
            self._serving = index
            return index

    def switch(self, name: str, also: Callable[[Connection], T]) -> tuple[str | None, T]:
        """Point the alias at `name` and run `also` in the same transaction (the record
        store's rows moving with it). Returns the previous collection and what `also` did."""
        with self.aliases.engine.begin() as conn:
            previous = self.aliases.set_in(conn, self.alias, name)
            return previous, also(conn)

    # -- checks ----------------------------------------------------------------------

    def check_model(self, index: ServingIndex) -> None:
        """:raises IndexMismatchError: vectors of another model would be meaningless here."""
        spec, mine = index.spec, self._spec()
        if spec is None:
            return
        if spec.model != mine.model or spec.dimension != mine.dimension:
            raise IndexMismatchError(
                f"index {index.collection!r} was built with embedding model {spec.model!r} "
                f"({spec.dimension} dimensions) but this process is configured with "
                f"{mine.model!r} ({mine.dimension}). Set DOCQA_EMBEDDING__MODEL back, or "
                "rebuild the index with `docqa reindex`."
            )

    def check_chunking(self, index: ServingIndex) -> None:
        """Before writing: :raises IndexMismatchError: the index was chunked otherwise."""
        spec, mine = index.spec, self._spec()
        if spec is not None and spec.chunking != mine.chunking:
            raise IndexMismatchError(
                f"index {index.collection!r} was chunked with {spec.chunking} but the "
                f"settings now say {mine.chunking}; mixing both would make results "
                "inconsistent. Rebuild with `docqa reindex`, or restore the chunking settings."
            )


class ServingRetriever:
    """Hybrid retrieval over whichever collection serves now (a re-index may switch it)."""

    def __init__(
        self,
        indexes: IndexCatalog,
        embedder: Embedder,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
    ) -> None:
        if settings.late_interaction_weight > 0 and not isinstance(embedder, SentencePooling):
            if "late_interaction_weight" in settings.model_fields_set:
                raise ConfigurationError(
                    "DOCQA_RETRIEVAL__LATE_INTERACTION_WEIGHT needs an embedder that returns "
                    f"word outputs (SentencePooling); {type(embedder).__name__} does not. "
                    "Use DOCQA_EMBEDDING__BACKEND=onnx-int8 or torch, or set the weight to 0."
                )
            # On by default, the stage is a refinement: an embedder that cannot feed it
            # (a custom one, say) serves without it (HybridRetriever skips it) rather than
            # not at all.
            log.warning(
                "late interaction is off: %s returns no word outputs (SentencePooling)",
                type(embedder).__name__,
            )
        self.indexes = indexes
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker

    def retrieve(
        self, query: str, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> Retrieval:
        index = self.indexes.existing()
        if index is None:
            return Retrieval(hits=[], query_embedding=self.embedder.embed_query(query))
        retriever = HybridRetriever(
            self.embedder,
            index.vectors,
            index.lexical,
            self.settings,
            self.reranker,
            sentences=index.sentences,
        )
        return retriever.retrieve(query, top_k, filters)

    def index_version(self) -> str:
        index = self.indexes.existing()
        return index.version() if index is not None else f"{self.indexes.alias}@empty"
