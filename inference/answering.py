"""Answering a question: the one path that `/v1/ask`, its streamed form, the OpenAI door,
the CLI and the eval runner all take.

    cache lookup -> retrieve -> not-found decision -> generate -> settle

Settling stamps the stage timings on a fresh answer, caches it (never a degraded one) and
hands it to the question log. The plain and the streamed answer share every step but the
generator call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from docqa import metrics, tracing
from docqa.domain import NOT_FOUND_ANSWER, Answer, Citation
from docqa.settings import AnswerSettings
from inference.cache import Cache, cache_key
from inference.protocols import AnswerEvent, Generator, QuestionLog
from retrieval.protocols import Retrieval, Retriever, SearchFilters


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
    ) -> None:
        """:param default_top_k: passages used when a question does not say.
        :param question_log: told about every served answer (drift recording).
        :param cache_scope: whatever else shapes an answer (retrieval settings, the model
            and prompt of the generator), part of every cache key."""
        self.retriever = retriever
        self.generator = generator
        self.cache = cache
        self.settings = settings
        self.default_top_k = default_top_k
        self.question_log = question_log
        self.cache_scope = cache_scope

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
        caching = self._caching(use_cache)
        key = self._cache_key(question, query, top_k, filters) if caching else None
        if key is not None and (cached := self._cached_answer(key, question, t0)) is not None:
            return cached
        retrieval = self._retrieve(query, top_k, filters)
        t1 = time.perf_counter()
        if self.relevant(retrieval):
            with tracing.span("docqa.generate", generator=self.generator.name):
                answer = self.generator.generate(question, retrieval.hits)
        else:
            answer = not_found()
        self._settle(answer, question, retrieval, key, t0, t1)
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
        key = None
        if self._caching(use_cache):
            key = await asyncio.to_thread(self._cache_key, question, query, top_k, filters)
            cached = await asyncio.to_thread(self._cached_answer, key, question, t0)
            if cached is not None:
                async for event in answered(cached):
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
                    self._settle, event.answer, question, retrieval, key, t0, t1
                )
            yield event

    def relevant(self, retrieval: Retrieval) -> bool:
        """Whether the passages are worth answering from; otherwise the generator is not
        asked and the answer says nothing was found."""
        return bool(retrieval.hits) and retrieval.nearest >= self.settings.min_relevance

    # -- what ask and ask_stream share ---------------------------------------------------

    def _retrieve(
        self, question: str, top_k: int | None, filters: SearchFilters | None
    ) -> Retrieval:
        with tracing.span("docqa.retrieve"):
            return self.retriever.retrieve(question, top_k, filters)

    def _caching(self, use_cache: bool) -> bool:
        return use_cache and bool(self.settings.cache_ttl_s)

    def _cached_answer(self, key: str, question: str, t0: float) -> Answer | None:
        cached = self.cache.get(key)
        if cached is None:
            return None
        answer = answer_from_dict(cached)
        answer.timings_ms = {"total": _ms(time.perf_counter() - t0)}
        answer.cached = True
        metrics.observe_answer("cached", answer.timings_ms, self.generator.name)
        if self.question_log is not None:
            self.question_log.record(question, answer, None)
        return answer

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
        record the question."""
        t2 = time.perf_counter()
        answer.timings_ms = {
            **answer.timings_ms,
            "retrieve": _ms(t1 - t0),
            "generate": _ms(t2 - t1),
            "total": _ms(t2 - t0),
        }
        if cache_key is not None and not answer.degraded:
            self.cache.set(cache_key, dataclasses.asdict(answer), self.settings.cache_ttl_s)
        outcome = "not_found" if not answer.found else "degraded" if answer.degraded else "answered"
        metrics.observe_answer(outcome, answer.timings_ms, self.generator.name)
        metrics.observe_usage(answer.usage)
        if self.question_log is not None:
            self.question_log.record(question, answer, retrieval)

    def _cache_key(
        self, question: str, query: str, top_k: int | None, filters: SearchFilters | None
    ) -> str:
        return cache_key(
            self.retriever.index_version(),
            " ".join(question.split()).lower(),
            " ".join(query.split()).lower(),
            top_k or self.default_top_k,
            filters.key() if filters else "",
            self.settings.model_dump(),
            self.cache_scope,
        )


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
