"""Answering a question: the one path that `/v1/ask`, its streamed form, the OpenAI door,
the CLI and the eval runner all take.

    cache lookup -> retrieve -> not-found decision -> generate -> settle

Settling stamps the stage timings on a fresh answer, caches it (never a degraded one) and
hands it to the question log. The plain and the streamed answer share every step but the
generator call.

The cache key is built here from everything that shapes an answer (`_scope`): the index
version, top_k, the filters, the not-found threshold, the retrieval settings the
composition root hands in, and what the generator itself reports (`cache_scope()`: its
model, as served, and its prompt). A generator that cannot say yet (a vLLM whose served
model is not known) is not looked up; its answer is filed under what it reports after
answering.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from docqa import metrics, tracing
from docqa.domain import NOT_FOUND_ANSWER, Answer, Citation
from docqa.settings import AnswerSettings
from inference.cache import (
    AnswerCache,
    Cache,
    CachedAnswer,
    Probe,
    SimilarQuestions,
    normalize_question,
)
from inference.notfound import worth_answering
from inference.protocols import AnswerEvent, Generator, QuestionLog
from retrieval.protocols import Embedder, Retrieval, Retriever, SearchFilters


@dataclass
class _Lookup:
    """A question's cache lookup: the scope it was made in, the probe (None when the
    generator could not say what shapes its answers) and the answer found, if any."""

    scope: dict[str, Any]
    probe: Probe | None
    answer: Answer | None = None


class AnsweringService:
    def __init__(
        self,
        *,
        retriever: Retriever,
        generator: Generator,
        cache: Cache,
        settings: AnswerSettings,
        default_top_k: int,
        question_log: QuestionLog | None = None,
        cache_scope: Any = None,
        embedder: Embedder | None = None,
    ) -> None:
        """:param default_top_k: passages used when a question does not say.
        :param question_log: told about every served answer (drift recording).
        :param cache_scope: what else shapes an answer (the retrieval settings), JSON data,
            part of every cache key.
        :param embedder: embeds questions for the semantic cache layer, when
            `settings.semantic_cache` turns it on."""
        self.retriever = retriever
        self.generator = generator
        self.settings = settings
        self.default_top_k = default_top_k
        self.question_log = question_log
        self.cache_scope = cache_scope
        similar = None
        if settings.semantic_cache and embedder is not None:
            similar = SimilarQuestions(
                embedder,
                threshold=settings.semantic_threshold,
                candidates=settings.semantic_candidates,
            )
        self.answers = AnswerCache(cache, settings.cache_ttl_s, similar)

    def ask(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        use_cache: bool = True,
        search_for: str | None = None,
    ) -> Answer:
        """Retrieve, then answer from the passages, or say plainly that nothing relevant
        was found (no generator call then).

        :param search_for: what to retrieve with when it is not the question itself (a
            follow-up question with the earlier turn it refers to)."""
        t0 = time.perf_counter()
        query = search_for or question
        lookup = None
        if self._caching(use_cache):
            lookup = self._lookup(question, query, top_k, filters, t0)
            if lookup.answer is not None:
                return lookup.answer
        retrieval = self._retrieve(query, top_k, filters)
        t1 = time.perf_counter()
        answer = self.answer_from(question, retrieval)
        self._settle(answer, question, retrieval, lookup, t0, t1)
        return answer

    async def ask_stream(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        use_cache: bool = True,
        search_for: str | None = None,
    ) -> AsyncIterator[AnswerEvent]:
        """`ask` as events: answer deltas, then one final event with the answer (citations,
        usage, timings). Cache and not-found behave as in `ask`. Closing the iterator early
        (a client that went away) cancels the generation upstream."""
        t0 = time.perf_counter()
        query = search_for or question
        lookup = None
        if self._caching(use_cache):
            lookup = await asyncio.to_thread(self._lookup, question, query, top_k, filters, t0)
            if lookup.answer is not None:
                async for event in answered(lookup.answer):
                    yield event
                return
        retrieval = await asyncio.to_thread(self._retrieve, query, top_k, filters)
        t1 = time.perf_counter()
        if self.relevant(retrieval):
            astream = getattr(self.generator, "astream", None)
            events = (
                astream(question, retrieval.hits)
                if astream is not None
                else in_thread(self.generator.stream(question, retrieval.hits))
            )
        else:
            events = answered(not_found())
        first_delta: float | None = None
        async for event in events:
            if event.kind == "delta" and first_delta is None:
                first_delta = time.perf_counter()
            if event.kind == "final" and event.answer is not None:
                if first_delta is not None:
                    event.answer.timings_ms["first_delta"] = _ms(first_delta - t0)
                await asyncio.to_thread(
                    self._settle, event.answer, question, retrieval, lookup, t0, t1
                )
            yield event

    def answer_from(self, question: str, retrieval: Retrieval) -> Answer:
        """The answer from passages already retrieved, or not-found (no cache, no log)."""
        if not self.relevant(retrieval):
            return not_found()
        with tracing.span("docqa.generate", generator=self.generator.name):
            return self.generator.generate(question, retrieval.hits)

    def relevant(self, retrieval: Retrieval) -> bool:
        """Whether the passages are worth answering from; otherwise the generator is not
        asked and the answer says nothing was found."""
        return worth_answering(retrieval, self.settings)

    # -- what ask and ask_stream share ---------------------------------------------------

    def _retrieve(
        self, question: str, top_k: int | None, filters: SearchFilters | None
    ) -> Retrieval:
        with tracing.span("docqa.retrieve"):
            return self.retriever.retrieve(question, top_k, filters)

    def _caching(self, use_cache: bool) -> bool:
        return use_cache and bool(self.settings.cache_ttl_s)

    def _scope(
        self, question: str, query: str, top_k: int | None, filters: SearchFilters | None
    ) -> dict[str, Any]:
        """Everything besides the question that shapes the answer: a follow-up searched
        with the turn before it is answered in the scope of that search."""
        return {
            "index": self.retriever.index_version(),
            "search_for": normalize_question(query) if query != question else None,
            "top_k": top_k or self.default_top_k,
            "filters": filters.key() if filters is not None else None,
            "min_relevance": self.settings.min_relevance,
            "not_found": [
                self.settings.not_found,
                self.settings.min_evidence,
                self.settings.min_rerank_score,
            ],
            "retrieval": self.cache_scope,
            "generator": self.generator.cache_scope(),
        }

    def _lookup(
        self,
        question: str,
        query: str,
        top_k: int | None,
        filters: SearchFilters | None,
        t0: float,
    ) -> _Lookup:
        scope = self._scope(question, query, top_k, filters)
        if scope["generator"] is None:
            return _Lookup(scope, None)
        probe = self.answers.probe(scope, question)
        cached = self.answers.lookup(probe)
        if cached is None:
            return _Lookup(scope, probe)
        answer = self._from_cache(cached, question, t0)
        metrics.observe_answer("cached", answer.timings_ms, self.generator.name)
        if self.question_log is not None:
            self.question_log.record(question, answer, None)
        return _Lookup(scope, probe, answer)

    def _from_cache(self, cached: CachedAnswer, question: str, t0: float) -> Answer:
        answer = answer_from_dict(cached.answer)
        answer.timings_ms = {"total": _ms(time.perf_counter() - t0)}
        answer.cached = True
        if cached.similarity is not None:
            answer.warnings.append(
                f"answered from the cache with the answer to a question worded alike: "
                f"{cached.question!r} (similarity {cached.similarity:.3f})"
            )
        return answer

    def _settle(
        self,
        answer: Answer,
        question: str,
        retrieval: Retrieval,
        lookup: _Lookup | None,
        t0: float,
        t1: float,
    ) -> None:
        """Stamp the stage timings on a fresh answer, cache it (never a degraded one) and
        record the question."""
        t2 = time.perf_counter()
        answer.timings_ms = {
            **answer.timings_ms,
            "retrieve": _ms(t1 - t0),
            "generate": _ms(t2 - t1),
            "total": _ms(t2 - t0),
        }
        if lookup is not None and not answer.degraded:
            self._store(answer, question, lookup)
        outcome = "not_found" if not answer.found else "degraded" if answer.degraded else "answered"
        metrics.observe_answer(outcome, answer.timings_ms, self.generator.name)
        metrics.observe_usage(answer.usage)
        if self.question_log is not None:
            self.question_log.record(question, answer, retrieval)

    def _store(self, answer: Answer, question: str, lookup: _Lookup) -> None:
        """File the answer under what shaped it, as the generator reports it now: having
        answered, it knows its served model even where it could not say before."""
        generator = self.generator.cache_scope()
        if generator is None:
            return
        probe = lookup.probe
        if probe is None or generator != lookup.scope["generator"]:
            vector = probe.vector if probe is not None else None
            probe = self.answers.probe({**lookup.scope, "generator": generator}, question)
            probe.vector = vector
        self.answers.store_answer(probe, dataclasses.asdict(answer))


def not_found() -> Answer:
    return Answer(text=NOT_FOUND_ANSWER, found=False, citations=[])


def answer_from_dict(data: dict[str, Any]) -> Answer:
    data = dict(data)
    data["citations"] = [Citation(**c) for c in data.get("citations", [])]
    return Answer(**data)


async def answered(answer: Answer) -> AsyncIterator[AnswerEvent]:
    """A finished answer as the events of a stream: one delta, then the final event."""
    yield AnswerEvent(kind="delta", text=answer.text)
    yield AnswerEvent(kind="final", answer=answer)


async def in_thread(events: Iterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
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
