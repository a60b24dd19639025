"""A stand-in for `vllm serve` on loopback: real HTTP, vLLM's wire format, no GPU.

It speaks the parts of vLLM's OpenAI-compatible server that docqa uses, byte for byte as
vLLM writes them (vllm/entrypoints/openai: chat_completion/protocol.py, serving_chat.py,
engine/protocol.py):

- `GET /v1/models`: a ModelList whose cards carry `max_model_len`;
- `POST /tokenize`: `{"count", "max_model_len", "tokens", "token_strs"}` for a `prompt` or
  for chat `messages` (with the chat template applied);
- `POST /v1/chat/completions`: streamed as `data: {chunk}\\n\\n` events (a first chunk with
  the role, content chunks, a chunk with `finish_reason`, a `choices: []` chunk with usage
  when `stream_options.include_usage`, then `data: [DONE]`), or whole;
- errors as `{"error": {"message", "type", "param", "code"}}`, or with
  `error_style="legacy"` as releases before 0.9 wrote them:
  `{"object": "error", "message", "type", "param", "code"}`; a prompt longer than the
  context is refused with HTTP 400 as vLLM does.

Its tokenizer is a toy (words of up to 6 characters, punctuation), but it is the one its
/tokenize and its context check share, which is what docqa relies on.

Tell it how to misbehave through `behaviour`: `slow` (a long prefill before the first
chunk), `drip` (one byte at a time), `disconnect` (the connection drops mid-answer),
`error_event` (an error event mid-stream, as vLLM sends when generation fails), `503`,
`hang` (accepts and never answers), `stall` (streams `stall_after` words, then goes silent
with the connection open; a non-streamed request hangs).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.loopback import LoopbackServer, free_port, serve

Mode = Literal["ok", "slow", "drip", "disconnect", "error_event", "503", "hang", "stall"]

_TOKEN = re.compile(r"\w{1,6}|[^\w\s]")
# What the toy chat template adds: `<|im_start|>role\n ... <|im_end|>\n` per message, and
# `<|im_start|>assistant\n` as the generation prompt.
_PER_MESSAGE = 4
_GENERATION_PROMPT = 3


def tokenize(text: str) -> list[int]:
    return [zlib.crc32(t.encode()) % 50_000 for t in _TOKEN.findall(text)]


def chat_tokens(messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> int:
    count = sum(len(tokenize(str(m.get("content") or ""))) + _PER_MESSAGE for m in messages)
    return count + (_GENERATION_PROMPT if add_generation_prompt else 0)


def answer_pieces(text: str) -> list[str]:
    """The answer as a model streams it: a word (with its space) or a bracket at a time."""
    return re.findall(r"\[|\]|[^\s\[\]]+\s*|\s+", text)


@dataclass
class Behaviour:
    mode: Mode = "ok"
    answer: str | Callable[[list[dict[str, Any]]], str] = "The answer is in the passages [1]."
    model: str = "fake/llm-7b"
    max_model_len: int = 4096
    tokenize: bool = True
    error_style: Literal["current", "legacy"] = "current"
    first_token_delay_s: float = 0.0  # prefill time ("slow" waits `slow_s` instead)
    slow_s: float = 5.0
    token_delay_s: float = 0.0  # between content chunks
    drip_byte_delay_s: float = 0.02
    drip_from: int = 0  # content chunks sent whole before the drip starts
    disconnect_after: int = 3  # content chunks sent before the connection drops
    stall_after: int = 3  # content chunks sent before a `stall` server goes silent
    finish_reason: str = "stop"  # "length": the answer reached max_tokens


@dataclass
class ChatRecord:
    body: dict[str, Any]
    prompt_tokens: int
    outcome: str = "started"  # started, finished, aborted, refused


@dataclass
class FakeVLLM:
    behaviour: Behaviour = field(default_factory=Behaviour)
    chats: list[ChatRecord] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._served: LoopbackServer | None = None

    # -- running it ------------------------------------------------------------------

    def start(self, port: int | None = None) -> FakeVLLM:
        self._served = serve(self.app(), port=port, log_level="critical")
        self.url = self._served.url
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop(timeout=10)

    def __enter__(self) -> FakeVLLM:
        return self.start() if not self.url else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def outcomes(self) -> list[str]:
        return [c.outcome for c in self.chats]

    # -- the HTTP API ----------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/tokenize", self._tokenize, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/health", lambda _: Response(status_code=200), methods=["GET"]),
            ]
        )

    def _error_body(self, status: int, message: str, type_: str) -> dict[str, Any]:
        if self.behaviour.error_style == "legacy":
            return {
                "object": "error",
                "message": message,
                "type": type_,
                "param": None,
                "code": status,
            }
        return {"error": {"message": message, "type": type_, "param": None, "code": status}}

    def _error(self, status: int, message: str, type_: str) -> JSONResponse:
        return JSONResponse(self._error_body(status, message, type_), status_code=status)

    async def _models(self, _: Request) -> Response:
        b = self.behaviour
        created = int(time.time())
        card = {
            "id": b.model,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": b.model,
            "parent": None,
            "max_model_len": b.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex}",
                    "object": "model_permission",
                    "created": created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def _tokenize(self, request: Request) -> Response:
        b = self.behaviour
        if not b.tokenize:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await request.json()
        if body.get("model") not in (None, b.model):
            return self._not_found_model(body.get("model"))
        if "messages" in body:
            count = chat_tokens(body["messages"], body.get("add_generation_prompt", True))
            tokens = list(range(count))
        else:
            tokens = tokenize(str(body.get("prompt", "")))
            count = len(tokens)
        return JSONResponse(
            {"count": count, "max_model_len": b.max_model_len, "tokens": tokens, "token_strs": None}
        )

    def _not_found_model(self, name: object) -> JSONResponse:
        return self._error(404, f"The model `{name}` does not exist.", "NotFoundError")

    async def _chat(self, request: Request) -> Response:
        b = self.behaviour
        body = await request.json()
        messages = body.get("messages") or []
        prompt_tokens = chat_tokens(messages)
        record = ChatRecord(body, prompt_tokens)
        self.chats.append(record)
        if b.mode == "503":
            record.outcome = "refused"
            return self._error(503, "The server is overloaded, try again.", "ServiceUnavailable")
        if body.get("model") not in (None, b.model):
            record.outcome = "refused"
            return self._not_found_model(body.get("model"))
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)
        if prompt_tokens + max_tokens > b.max_model_len:
            record.outcome = "refused"
            return self._error(
                400,
                f"This model's maximum context length is {b.max_model_len} tokens. However, "
                f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"messages, {max_tokens} in the completion). Please reduce the length of the "
                "messages or completion.",
                "BadRequestError",
            )
        text = b.answer(messages) if callable(b.answer) else b.answer
        pieces = answer_pieces(text)
        completion_tokens = len(tokenize(text))
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not body.get("stream"):
            if b.mode in ("hang", "stall"):
                await asyncio.sleep(3600)
            await asyncio.sleep(b.slow_s if b.mode == "slow" else b.first_token_delay_s)
            record.outcome = "finished"
            return JSONResponse(
                {
                    "id": request_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": b.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": text,
                                "refusal": None,
                                "annotations": None,
                                "audio": None,
                                "function_call": None,
                                "tool_calls": [],
                                "reasoning_content": None,
                            },
                            "logprobs": None,
                            "finish_reason": b.finish_reason,
                            "stop_reason": None,
                        }
                    ],
                    "service_tier": None,
                    "system_fingerprint": None,
                    "usage": {**usage, "prompt_tokens_details": None},
                    "prompt_logprobs": None,
                    "kv_transfer_params": None,
                }
            )
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        return StreamingResponse(
            self._stream(record, request_id, pieces, usage, include_usage),
            media_type="text/event-stream",
        )

    async def _stream(
        self,
        record: ChatRecord,
        request_id: str,
        pieces: list[str],
        usage: dict[str, int],
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        b = self.behaviour
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": b.model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

        def content(piece: str, finish: str | None = None) -> bytes:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": piece},
                "logprobs": None,
                "finish_reason": finish,
                "token_ids": None,
            }
            if finish is not None:
                choice["stop_reason"] = None
            return chunk([choice])

        sent = 0

        async def send(data: bytes) -> AsyncIterator[bytes]:
            nonlocal sent
            sent += 1
            if b.mode == "drip" and sent > b.drip_from + 1:  # the role chunk comes first
                for i in range(len(data)):
                    await asyncio.sleep(b.drip_byte_delay_s)
                    yield data[i : i + 1]
            else:
                yield data

        try:
            if b.mode == "hang":
                await asyncio.sleep(3600)
            await asyncio.sleep(b.slow_s if b.mode == "slow" else b.first_token_delay_s)
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            async for part in send(chunk([{**role, "logprobs": None, "finish_reason": None}])):
                yield part
            for n, piece in enumerate(pieces):
                if n and b.token_delay_s:
                    await asyncio.sleep(b.token_delay_s)
                if b.mode == "stall" and n == b.stall_after:
                    await asyncio.sleep(3600)
                if b.mode == "disconnect" and n == b.disconnect_after:
                    record.outcome = "dropped"
                    raise ConnectionAbortedError("fake vLLM drops the connection")
                if b.mode == "error_event" and n == b.disconnect_after:
                    record.outcome = "error_event"
                    error = self._error_body(
                        500,
                        "CUDA error: an illegal memory access was encountered",
                        "InternalServerError",
                    )
                    yield f"data: {json.dumps(error)}\n\n".encode()
                    yield b"data: [DONE]\n\n"
                    return
                last = n == len(pieces) - 1
                async for part in send(content(piece, b.finish_reason if last else None)):
                    yield part
            if not pieces:
                async for part in send(content("", "stop")):
                    yield part
            if include_usage:
                async for part in send(chunk([], usage=usage)):
                    yield part
            async for part in send(b"data: [DONE]\n\n"):
                yield part
            record.outcome = "finished"
        finally:
            if record.outcome == "started":
                record.outcome = "aborted"  # the client went away before the end


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def main(argv: list[str] | None = None) -> None:
    """Serve the fake in the foreground: `python -m tests.fakes.fake_vllm --port 8001`."""
    import argparse

    p = argparse.ArgumentParser(description="A vLLM wire-format fake (no GPU, no model).")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--mode", default="ok", choices=list(Mode.__args__))  # type: ignore[attr-defined]
    p.add_argument("--answer", default=Behaviour.answer)
    p.add_argument("--token-delay-s", type=float, default=0.05)
    p.add_argument("--max-model-len", type=int, default=4096)
    args = p.parse_args(argv)
    fake = FakeVLLM(
        Behaviour(
            mode=args.mode,
            answer=args.answer,
            token_delay_s=args.token_delay_s,
            max_model_len=args.max_model_len,
        )
    )
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
