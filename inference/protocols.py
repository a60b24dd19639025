"""The boundaries of answer writing: the generator that writes an answer from passages,
and the log that is told about every answer served."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from docqa.domain import Answer, ScoredChunk
from retrieval.protocols import Retrieval


@dataclass
class AnswerEvent:
    """One step of a streamed answer: text deltas, then one final event with the answer
    (citations, usage, timings)."""

    kind: Literal["delta", "final"]
    text: str = ""
    answer: Answer | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Generator(Protocol):
    """Question and ranked context in, answer with citations out.

    The caller has already decided that the context is relevant (it answers "not found"
    itself otherwise), but a generator may still return `found=False` when the passages do
    not answer the question. Every citation must point at one of the given passages.
    Errors talking to a model server raise `docqa.errors.ServiceUnavailable`.
    """

    name: str

    def generate(self, question: str, context: list[ScoredChunk]) -> Answer: ...

    def stream(self, question: str, context: list[ScoredChunk]) -> Iterator[AnswerEvent]:
        """The same answer as `generate`, as deltas then a final event."""

    def cache_scope(self) -> dict[str, Any] | None:
        """What shapes this generator's answers besides the question and the passages (its
        model as actually served, prompt version, sampling), as JSON data: part of every
        answer-cache key. None when it cannot tell now; the answer is then not looked up
        in the cache. Never blocks on a network call."""


class QuestionLog(Protocol):
    """Told about every answer served (evals records them to watch drift).

    Called on the answering path, so it must never raise and never block: queue and return.
    """

    def record(self, question: str, answer: Answer, retrieval: Retrieval | None) -> None:
        """One served answer; `retrieval` is None for an answer served from the cache."""
