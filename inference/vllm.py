"""Answers written by an LLM served by vLLM (`vllm serve MODEL`), through its
OpenAI-compatible HTTP API. vLLM is never imported: it runs as its own process.

One answer, step by step:

1. pick a server (`UpstreamPool`: healthy first, fewest requests in flight);
2. read its model and context length (`/v1/models`), and pack the numbered passages into
   `max_model_len - answer tokens`, counted by the served tokenizer (`/tokenize`) or by a
   safe estimate when the server cannot count (`inference/prompt.py`);
3. stream `/v1/chat/completions`; every delta goes through the link filter
   (`inference/safety.py`) and the citation renumbering (`inference/citations.py`) before
   anyone sees it;
4. connect errors, timeouts and 5xx before the first token move on to the next server (up
   to `max_attempts`); nothing is retried once the answer has started, and a server that
   timed out is not asked again within the request. When no server answers in time, the
   extractive answerer stands in and the answer says `degraded`.

Every wait is bounded: the connect timeout per request; `first_token_timeout_s` per
attempt and `first_token_budget_s` across all of them (the longest a request waits before
its degraded answer, whatever the servers do); `read_timeout_s` for each silence once the
answer streams; and `deadline_s` for the whole answer (a server that drips a byte at a
time is cut off there).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from docqa.domain import NOT_FOUND_ANSWER, Answer, ScoredChunk
from docqa.errors import ServiceUnavailable
from docqa.settings import Settings
from inference.citations import NO_CITATION_WARNING, CitationMarkers
from inference.prompt import PROMPT_VERSION, EstimatedTokens, PackedPrompt, pack_prompt
from inference.protocols import AnswerEvent, Generator
from inference.safety import LinkPolicy, StreamSanitizer, allowed_host
from inference.upstream import (
    ChatStream,
    ServerTokens,
    TokenizeUnsupported,
    Upstream,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
    error_from_response,
    read_models,
    within,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The not-found sentence, as a model may write it (without the final period, say).
_NOT_FOUND_PREFIX = NOT_FOUND_ANSWER.rstrip(".").lower()


class AnswerCut(Exception):
    """The server failed after the answer had started: nothing is retried."""

    def __init__(self, reason: str, draft: AnswerDraft, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.draft = draft
        self.timed_out = timed_out


@dataclass
class AnswerDraft:
    """The answer as it streams: filtered, renumbered text and what it cites."""

    packed: PackedPrompt
    policy: LinkPolicy
    text: str = ""
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    prepared_at: float | None = None
    model: str = ""

    def __post_init__(self) -> None:
        self.sanitizer = StreamSanitizer(self.policy)
        self.markers = CitationMarkers(self.packed.passages)
        self._held_space = ""

    def feed(self, delta: str) -> str:
        return self._emit(self.sanitizer.feed(delta))

    def flush(self) -> str:
        return self._emit(self.sanitizer.flush())

    def _emit(self, safe: str) -> str:
        # Whitespace is held back until more text follows, so the deltas put together are
        # exactly the final answer (no leading or trailing blanks).
        text = self._held_space + self.markers.rewrite(safe)
        if not self.text:
            text = text.lstrip()
        body = text.rstrip()
        self._held_space = text[len(body) :]
        self.text += body
        return body

    def finish(self, *, cut: str | None = None) -> Iterator[AnswerEvent]:
        """The held-back tail, if any, then the final event."""
        tail = self.flush()
        if tail:
            yield AnswerEvent(kind="delta", text=tail)
        yield AnswerEvent(kind="final", answer=self.answer(cut=cut), extra=_extra(self))

    def answer(self, *, cut: str | None = None) -> Answer:
        text = self.text
        warnings: list[str] = []
        found = bool(text) and not text.lower().startswith(_NOT_FOUND_PREFIX)
        if not text:
            text = NOT_FOUND_ANSWER
            warnings.append("the language model returned an empty answer")
        citations = self.markers.citations if found else []
        if found and not citations:
            warnings.append(NO_CITATION_WARNING)
        if self.markers.dropped:
            warnings.append(
                f"removed {self.markers.dropped} citation marker(s) that pointed at no passage"
            )
        if self.sanitizer.removed:
            warnings.append(
                f"removed {self.sanitizer.removed} link(s) or image(s) to hosts not on "
                "DOCQA_VLLM__LINK_ALLOWLIST"
            )
        if self.finish_reason == "length":
            warnings.append("the answer reached the answer token limit and may be cut short")
        if cut:
            warnings.append(f"the answer was cut short: {cut}")
        now = time.monotonic()
        timings = {"generate": _ms(now - self.started_at)}
        if self.prepared_at is not None:
            timings["prompt"] = _ms(self.prepared_at - self.started_at)
        if self.first_token_at is not None:
            timings["first_token"] = _ms(self.first_token_at - self.started_at)
        return Answer(
            text=text,
            found=found,
            citations=citations,
            timings_ms=timings,
            degraded=cut is not None,
            usage=self.usage,
            warnings=warnings,
            finish_reason=self.finish_reason,
        )


class VLLMGenerator:
    """`Generator` over one or more vLLM servers, with the extractive answerer as fallback.

    :param fallback: answers when no server does (`degraded: true`); None raises
        `ServiceUnavailable` instead.
    :param transport: an httpx transport for tests; None talks over the network.
    """

    name = "vllm"

    def __init__(
        self,
        settings: Settings,
        fallback: Generator | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.vllm
        self.fallback = fallback
        self.pool = UpstreamPool(self.config.urls, self.config.unhealthy_cooldown_s)
        self._transport = transport

    # -- the Generator protocol (synchronous callers: the CLI, the eval runner, /v1/ask) --

    def cache_scope(self) -> dict[str, Any] | None:
        """The model (configured, or as the servers last listed it), the prompt version and
        every setting that changes the text. None while the served model is not known."""
        cfg = self.config
        model = cfg.model or self.pool.served_model()
        if model is None:
            return None
        return {
            "generator": self.name,
            "model": model,
            "prompt": PROMPT_VERSION,
            "temperature": cfg.temperature,
            "max_answer_tokens": cfg.max_answer_tokens,
            "max_model_len": cfg.max_model_len,
            "link_allowlist": sorted({allowed_host(entry) for entry in cfg.link_allowlist}),
        }

    def generate(self, question: str, context: list[ScoredChunk]) -> Answer:
        """The whole answer. A server failing mid-answer gives the extractive answer (there
        is no half-sent text to keep)."""
        final: Answer | None = None
        for event in iterate_sync(lambda: self.astream(question, context, partial_ok=False)):
            if event.kind == "final":
                final = event.answer
        assert final is not None
        return final

    def stream(self, question: str, context: list[ScoredChunk]) -> Iterator[AnswerEvent]:
        return iterate_sync(lambda: self.astream(question, context))

    # -- the async path (streaming HTTP: a client that leaves cancels the generation) --

    async def astream(
        self, question: str, context: list[ScoredChunk], *, partial_ok: bool = True
    ) -> AsyncIterator[AnswerEvent]:
        """Deltas, then one final event. With `partial_ok`, a server that fails after the
        first token ends the answer there (`degraded`, with a warning); otherwise the
        extractive answer replaces it."""
        cfg = self.config
        started = time.monotonic()
        deadline = started + cfg.deadline_s
        first_token_by = min(deadline, started + cfg.first_token_budget_s)
        tried: list[Upstream] = []
        timed_out: list[Upstream] = []
        failures: list[str] = []
        # During an outage one probe per request, not max_attempts connect timeouts.
        attempts = 1 if self.pool.all_unhealthy() else cfg.max_attempts
        # Reads are bounded by the deadlines below (`within`, ChatStream), not by httpx.
        timeout = httpx.Timeout(None, connect=cfg.connect_timeout_s)
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        async with httpx.AsyncClient(
            timeout=timeout, headers=headers, transport=self._transport
        ) as client:
            for _ in range(attempts):
                if time.monotonic() >= first_token_by:
                    failures.append(
                        "no first token within DOCQA_VLLM__FIRST_TOKEN_BUDGET_S "
                        f"({cfg.first_token_budget_s:g} s)"
                    )
                    break
                upstream = self.pool.acquire(tried, avoid=timed_out)
                if upstream is None:
                    if not tried:
                        failures.append(
                            "every server timed out recently and is passed over for "
                            f"DOCQA_VLLM__UNHEALTHY_COOLDOWN_S ({cfg.unhealthy_cooldown_s:g} s)"
                        )
                    break
                tried.append(upstream)
                try:
                    async for event in self._attempt(
                        client, upstream, question, context, first_token_by, deadline
                    ):
                        yield event
                    return
                except AnswerCut as cut:
                    self.pool.failed(upstream, cut.reason, timed_out=cut.timed_out)
                    log.warning("vLLM %s failed mid-answer: %s", upstream.base_url, cut.reason)
                    if partial_ok:
                        for event in cut.draft.finish(cut=cut.reason):
                            yield event
                        return
                    failures.append(f"failed mid-answer ({_short(cut.reason)})")
                    break
                except UpstreamError as exc:
                    log.warning("vLLM %s did not answer: %s", upstream.base_url, exc.message)
                    failures.append(_short(exc.message))
                    if isinstance(exc, UpstreamTimeout):
                        timed_out.append(upstream)
                        self.pool.failed(upstream, exc.message, timed_out=True)
                    elif exc.retryable:
                        self.pool.failed(upstream, exc.message)
                    else:
                        break  # the request itself was refused: another server would too
                finally:
                    self.pool.release(upstream)
        async for event in self._fall_back(question, context, failures):
            yield event

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        question: str,
        context: list[ScoredChunk],
        first_token_by: float,
        deadline: float,
    ) -> AsyncIterator[AnswerEvent]:
        started = time.monotonic()
        first_deadline = min(first_token_by, started + self.config.first_token_timeout_s)
        packed, model = await self._prepare(client, upstream, question, context, first_deadline)
        quoted = "\n".join(hit.chunk.text for hit in packed.passages)
        draft = AnswerDraft(
            packed,
            LinkPolicy(allowlist=self.config.link_allowlist, quoted=quoted),
            started_at=started,
            prepared_at=time.monotonic(),
            model=model,
        )
        body: dict[str, Any] = {
            "model": model,
            "messages": packed.messages,
            "max_tokens": packed.max_tokens,
            "temperature": self.config.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        request = client.build_request("POST", upstream.url("/v1/chat/completions"), json=body)
        response = await within(
            first_deadline,
            "POST /v1/chat/completions",
            lambda: client.send(request, stream=True),
        )
        try:
            if response.status_code != 200:
                error_body = await within(first_deadline, "reading the error", response.aread)
                raise error_from_response(response, error_body)
            stream = ChatStream(response, first_deadline)
            while True:
                try:
                    piece = await stream.next_piece()
                except UpstreamError as exc:
                    if draft.first_token_at is None:
                        raise
                    raise AnswerCut(
                        _cut_reason(exc), draft, timed_out=isinstance(exc, UpstreamTimeout)
                    ) from None
                if piece is None:
                    break
                if piece.usage:
                    draft.usage = piece.usage
                if piece.finish_reason:
                    draft.finish_reason = piece.finish_reason
                if piece.text:
                    if draft.first_token_at is None:
                        # From here on the whole answer's deadline applies, and each
                        # silence is bounded on its own.
                        draft.first_token_at = time.monotonic()
                        stream.deadline = deadline
                        stream.silence_s = self.config.read_timeout_s
                    out = draft.feed(piece.text)
                    if out:
                        yield AnswerEvent(kind="delta", text=out)
        finally:
            await response.aclose()
        self.pool.succeeded(upstream)
        for event in draft.finish():
            yield event

    async def _prepare(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        question: str,
        context: list[ScoredChunk],
        deadline: float,
    ) -> tuple[PackedPrompt, str]:
        """The model to ask and the prompt that fits its context."""
        cfg = self.config
        models = await read_models(client, upstream, deadline)
        if cfg.model:
            card = next((m for m in models if m.id == cfg.model), None)
            if card is None:
                served = ", ".join(m.id for m in models)
                raise UpstreamError(
                    f"the server does not serve model {cfg.model!r} (it serves {served}); "
                    "check DOCQA_VLLM__MODEL against `vllm serve --served-model-name`"
                )
        else:
            card = models[0]
        max_model_len = card.max_model_len or cfg.max_model_len
        # A small context still leaves room for the passages.
        answer_tokens = min(cfg.max_answer_tokens, max_model_len // 2)

        async def pack(counter: Any) -> PackedPrompt:
            return await pack_prompt(
                question,
                context,
                max_model_len=max_model_len,
                answer_tokens=answer_tokens,
                counter=counter,
            )

        if upstream.tokenize is not False:
            try:
                packed = await pack(ServerTokens(client, upstream, card.id, deadline))
                upstream.tokenize = True
                return packed, card.id
            except TokenizeUnsupported as exc:
                log.warning(
                    "%s cannot count tokens (%s): prompts are sized by estimate",
                    upstream.base_url,
                    exc,
                )
                upstream.tokenize = False
        return await pack(EstimatedTokens()), card.id

    async def _fall_back(
        self, question: str, context: list[ScoredChunk], failures: list[str]
    ) -> AsyncIterator[AnswerEvent]:
        why = "; ".join(dict.fromkeys(failures)) or "no server could be tried"
        if self.fallback is None:
            raise ServiceUnavailable(
                f"no language model server answered ({why}). Check that `vllm serve` runs at "
                "DOCQA_VLLM__URLS, or use DOCQA_ANSWER__GENERATOR=extractive."
            )
        fallback = self.fallback
        answer = await asyncio.to_thread(fallback.generate, question, context)
        answer.degraded = True
        answer.warnings.append(
            f"the language model did not answer ({why}); this answer quotes the passages instead"
        )
        if answer.text:
            yield AnswerEvent(kind="delta", text=answer.text)
        yield AnswerEvent(kind="final", answer=answer, extra={"generator": fallback.name})


def _extra(draft: AnswerDraft) -> dict[str, Any]:
    """What the final event says about the generation, beyond the answer."""
    return {
        "generator": "vllm",
        "model": draft.model,
        "prompt_version": PROMPT_VERSION,
        "prompt_tokens": draft.packed.prompt_tokens,
        "prompt_tokens_exact": draft.packed.exact,
        "max_model_len": draft.packed.max_model_len,
        "passages_used": len(draft.packed.passages),
        "passages_left_out": draft.packed.left_out,
        "finish_reason": draft.finish_reason,
    }


def _cut_reason(exc: UpstreamError) -> str:
    if isinstance(exc, UpstreamTimeout) and "deadline" in exc.message:
        return "the model server did not finish within DOCQA_VLLM__DEADLINE_S"
    if isinstance(exc, UpstreamTimeout) and "silent" in exc.message:
        silence = exc.message.rsplit(": ", 1)[-1]
        return f"the model server fell {silence} mid-answer (DOCQA_VLLM__READ_TIMEOUT_S)"
    return f"the model server failed mid-answer ({_short(exc.message)})"


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def iterate_sync(make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Drive an async iterator from synchronous code: it runs on its own event loop in a
    worker thread and hands items over a queue. Closing the returned iterator early (the
    caller stops reading) cancels the async work, and with it any open HTTP request."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    loop = asyncio.new_event_loop()

    async def pump() -> None:
        try:
            async for item in make():
                items.put(("item", item))
            items.put(("end", None))
        except BaseException as exc:  # handed to the reading thread
            items.put(("error", exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    task = loop.create_task(pump())

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except BaseException:  # noqa: BLE001 - already handed over by pump()
            pass
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="docqa-vllm", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "item":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        if thread.is_alive():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed in the meantime
                pass
            thread.join(timeout=5)
