"""The boundary between retrieval and answer writing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from docqa.domain import Answer, ScoredChunk


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
