"""The real embedder, recording every batch of documents (sentences) it is asked to embed:
how tests and the answer-step benchmark see what the extractive answerer embeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class CountingEmbedder:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return self.inner.embed_documents(texts)  # type: ignore[no-any-return]

    @property
    def documents(self) -> int:
        """How many documents were embedded, all batches together."""
        return sum(len(b) for b in self.batches)
