"""The vLLM servers docqa talks to: which one to ask next, and the wire protocol.

`UpstreamPool` keeps each server's health: a server that fails (connect error, timeout,
5xx, broken stream) is passed over for a cool-down while another is up, and requests go to
the healthy server with the fewest in flight. A server that timed out is passed over during
its cool-down even when no other is up: waiting on it again would only delay the degraded
answer. `ChatStream` reads vLLM's streamed chat completion (`data: {chunk}` events, then
`data: [DONE]`) with a deadline on every read and a bound on each silence, so neither a
silent server nor one that drips a byte at a time can hold a request past them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from docqa import metrics

T = TypeVar("T")

# A model list is re-read after this long: a server may be restarted with another model.
MODEL_INFO_TTL_S = 60.0
# One SSE line longer than this is not vLLM talking.
MAX_EVENT_BYTES = 4 * 2**20


class UpstreamError(Exception):
    """A model server did not give a usable answer. `retryable`: another attempt (on this
    server or the next) may succeed; False for requests the server refused as invalid."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status


class UpstreamTimeout(UpstreamError):
    pass


def root_url(url: str) -> str:
    """`http://gpu1:8000/v1/` and `http://gpu1:8000` both mean the server at the root."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


@dataclass
class ModelInfo:
    id: str
    max_model_len: int | None


@dataclass(eq=False)  # one per configured server: compared by identity
class Upstream:
    base_url: str
    unhealthy_until: float = 0.0
    in_flight: int = 0
    last_error: str | None = None
    models: list[ModelInfo] = field(default_factory=list)
    models_read_at: float = float("-inf")
    # Its last failure was a timeout: it accepts requests but does not answer.
    timed_out: bool = False
    # None: not known yet; False: the server has no usable /tokenize (not vLLM, or a
    # model without a chat template), so prompts are sized by estimate.
    tokenize: bool | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def healthy(self, now: float) -> bool:
        return now >= self.unhealthy_until


class UpstreamPool:
    """Health-aware choice among the configured servers. Thread-safe: the API's worker
    threads and event loop share one pool."""

    def __init__(
        self, urls: list[str], cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.upstreams = [Upstream(root_url(u)) for u in urls]
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def all_unhealthy(self) -> bool:
        now = self.clock()
        return not any(u.healthy(now) for u in self.upstreams)

    def acquire(self, tried: list[Upstream], avoid: Collection[Upstream] = ()) -> Upstream | None:
        """The server to ask next: a healthy one not yet tried for this request, fewest in
        flight first (ties in turn); then healthy ones again; then the one whose cool-down
        ends first. Never one in `avoid` (it timed out during this request) nor one cooling
        down after a timeout: None when no other is left."""
        with self._lock:
            now = self.clock()
            turn = next(self._turn)
            n = len(self.upstreams)
            candidates = [
                u
                for u in self.upstreams
                if u not in avoid and not (u.timed_out and not u.healthy(now))
            ]
            if not candidates:
                return None

            def order(u: Upstream) -> tuple[int, int, int, float, int]:
                return (
                    0 if u.healthy(now) else 1,
                    1 if u in tried else 0,
                    u.in_flight,
                    u.unhealthy_until,
                    (self.upstreams.index(u) - turn) % n,
                )

            chosen = min(candidates, key=order)
            chosen.in_flight += 1
            return chosen

    def release(self, upstream: Upstream) -> None:
        with self._lock:
            upstream.in_flight = max(0, upstream.in_flight - 1)

    def succeeded(self, upstream: Upstream) -> None:
        with self._lock:
            upstream.unhealthy_until = 0.0
            upstream.last_error = None
            upstream.timed_out = False

    def failed(self, upstream: Upstream, reason: str, *, timed_out: bool = False) -> None:
        # The label is the kind of failure, not the message: a bounded set of series.
        kind = "timeout" if timed_out else "error"
        metrics.UPSTREAM_FAILURES.labels(upstream.base_url, kind).inc()
        with self._lock:
            upstream.unhealthy_until = self.clock() + self.cooldown_s
            upstream.last_error = reason
            upstream.timed_out = timed_out

    def served_model(self) -> str | None:
        """The model a request would be answered by when none is configured (each server's
        first listed model), as last read from the servers, without asking them. None when
        a healthy server's list is unknown or older than MODEL_INFO_TTL_S (the next answer
        reads it again), or when the servers serve different models. While every server is
        down, their last lists stand."""
        now, read_now = self.clock(), time.monotonic()
        healthy = [u for u in self.upstreams if u.healthy(now)]
        models = set()
        for upstream in healthy or self.upstreams:
            if healthy and (
                not upstream.models or read_now - upstream.models_read_at >= MODEL_INFO_TTL_S
            ):
                return None
            if upstream.models:
                models.add(upstream.models[0].id)
        return models.pop() if len(models) == 1 else None

    def status(self) -> dict[str, str]:
        now = self.clock()
        return {
            u.base_url: "ok" if u.healthy(now) else f"unhealthy: {u.last_error}"
            for u in self.upstreams
        }


async def within(deadline: float, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Await `call()` but give up at `deadline` (time.monotonic)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UpstreamTimeout(f"{what}: deadline reached")
    try:
        async with asyncio.timeout(remaining):
            return await call()
    except TimeoutError:
        raise UpstreamTimeout(f"{what}: no answer within the deadline") from None
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"{what}: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{what}: {type(exc).__name__}: {exc}") from None


def error_from_response(response: httpx.Response, body: bytes) -> UpstreamError:
    """vLLM's error body is `{"error": {"message", "type", "param", "code"}}` (older
    releases: the same fields at the top level)."""
    message = body.decode("utf-8", errors="replace")[:500] or response.reason_phrase
    try:
        data = json.loads(body)
        detail = data.get("error", data) if isinstance(data, dict) else {}
        if isinstance(detail, dict) and detail.get("message"):
            message = str(detail["message"])
        elif isinstance(detail, str):
            message = detail
    except ValueError:
        pass
    status = response.status_code
    # 408/429: this server is busy, another (or this one later) may not be.
    retryable = status >= 500 or status in (408, 429)
    return UpstreamError(f"HTTP {status}: {message}", retryable=retryable, status=status)


async def read_models(
    client: httpx.AsyncClient, upstream: Upstream, deadline: float
) -> list[ModelInfo]:
    """The served models with their context length, cached for MODEL_INFO_TTL_S."""
    now = time.monotonic()
    if upstream.models and now - upstream.models_read_at < MODEL_INFO_TTL_S:
        return upstream.models
    response = await within(
        deadline, "GET /v1/models", lambda: client.get(upstream.url("/v1/models"))
    )
    if response.status_code != 200:
        raise error_from_response(response, response.content)
    try:
        cards = response.json()["data"]
        models = [ModelInfo(str(c["id"]), c.get("max_model_len")) for c in cards]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError(f"unreadable /v1/models answer: {exc}") from None
    if not models:
        raise UpstreamError("the server lists no model at /v1/models")
    upstream.models, upstream.models_read_at = models, now
    return models


class TokenizeUnsupported(Exception):
    """The server cannot count tokens for us (no /tokenize, or no chat template)."""


class ServerTokens:
    """Token counts from vLLM's /tokenize: the served model's own tokenizer and chat
    template, so a prompt sized with them is the prompt the server will see."""

    exact = True

    def __init__(
        self, client: httpx.AsyncClient, upstream: Upstream, model: str, deadline: float
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.model = model
        self.deadline = deadline

    async def _count(self, body: dict[str, Any]) -> int:
        response = await within(
            self.deadline,
            "POST /tokenize",
            lambda: self.client.post(self.upstream.url("/tokenize"), json=body),
        )
        if response.status_code in (400, 404, 405, 501):
            raise TokenizeUnsupported(f"/tokenize answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise error_from_response(response, response.content)
        try:
            return int(response.json()["count"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"unreadable /tokenize answer: {exc}") from None

    async def count_messages(self, messages: list[dict[str, str]]) -> int:
        return await self._count(
            {"model": self.model, "messages": messages, "add_generation_prompt": True}
        )

    async def count_texts(self, texts: list[str]) -> list[int]:
        return list(
            await asyncio.gather(
                *(
                    self._count({"model": self.model, "prompt": t, "add_special_tokens": False})
                    for t in texts
                )
            )
        )


@dataclass
class Piece:
    """One event of a streamed chat completion, as docqa needs it."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


class ChatStream:
    """Reads a streamed /v1/chat/completions response event by event.

    Each network read is bounded by `deadline` and, when `silence_s` is set, by that long
    after the read began (both changeable between reads: the caller allows less time for
    the first token than for the whole answer, and bounds silences once it streams). A
    server that closes the stream before its final event, or sends an error event, raises
    UpstreamError; one that stays silent past either bound raises UpstreamTimeout.
    """

    def __init__(
        self, response: httpx.Response, deadline: float, silence_s: float | None = None
    ) -> None:
        self.response = response
        self.deadline = deadline
        self.silence_s = silence_s
        self.finished = False
        self._chunks = response.aiter_raw()
        self._buffer = b""
        self._saw_finish = False

    async def next_piece(self) -> Piece | None:
        """The next piece, or None at the end of the answer."""
        while not self.finished:
            data = await self._next_event()
            if data is None:
                self.finished = True
                if self._saw_finish:
                    return None  # finished properly, only the [DONE] line got lost
                raise UpstreamError("the server closed the stream before the answer ended")
            if data.strip() == "[DONE]":
                self.finished = True
                return None
            piece = self._parse(data)
            if piece is not None:
                return piece
        return None

    def _parse(self, data: str) -> Piece | None:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamError(f"unreadable stream event: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise UpstreamError(f"unexpected stream event: {data[:200]!r}")
        if "error" in chunk or chunk.get("object") == "error":
            detail = chunk.get("error", chunk)
            if not isinstance(detail, dict):
                detail = {"message": str(detail)}
            code = detail.get("code")
            status = code if isinstance(code, int) else 500
            raise UpstreamError(
                f"error event: {detail.get('message', 'unknown error')}",
                retryable=status >= 500,
                status=status,
            )
        piece = Piece()
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            piece.usage = {k: int(v) for k, v in usage.items() if isinstance(v, int)}
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            # Reasoning models stream their thoughts as `reasoning_content`/`reasoning`:
            # not part of the answer.
            content = delta.get("content")
            if isinstance(content, str):
                piece.text += content
            if choice.get("finish_reason"):
                piece.finish_reason = str(choice["finish_reason"])
                self._saw_finish = True
        if not piece.text and piece.finish_reason is None and piece.usage is None:
            return None
        return piece

    async def _next_event(self) -> str | None:
        """The data of the next server-sent event; None at the end of the body."""
        lines: list[str] = []
        while True:
            line = await self._next_line()
            if line is None:
                return "\n".join(lines) if lines else None
            if not line:
                if lines:
                    return "\n".join(lines)
                continue
            if line.startswith(":"):
                continue  # a comment (keep-alive)
            name, _, value = line.partition(":")
            if name == "data":
                lines.append(value[1:] if value.startswith(" ") else value)

    async def _next_line(self) -> str | None:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_EVENT_BYTES:
                raise UpstreamError("the server sent an event larger than 4 MiB")
            chunk = await self._read_within()
            if chunk is None:
                if not self._buffer:
                    return None
                line, self._buffer = self._buffer, b""
                return line.decode("utf-8", errors="replace").rstrip("\r")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace").rstrip("\r")

    async def _read_within(self) -> bytes | None:
        silent_until = (
            time.monotonic() + self.silence_s if self.silence_s is not None else float("inf")
        )
        if silent_until >= self.deadline:
            return await within(self.deadline, "reading the answer stream", self._read)
        try:
            return await within(silent_until, "reading the answer stream", self._read)
        except UpstreamTimeout:
            raise UpstreamTimeout(
                f"reading the answer stream: silent for more than {self.silence_s:g} s"
            ) from None

    async def _read(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None
