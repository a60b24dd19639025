"""Boundaries of the ingestion stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class Embedder(Protocol):
    """Text to unit-length vectors. The same model must embed chunks and questions.

    `model_id` is recorded on every collection; an index built by one model is never
    queried with another.
    """

    model_id: str

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads before truncating, special tokens excluded."""

    @property
    def tokenizer(self) -> Any:
        """A Hugging Face fast tokenizer (chunk sizes are counted with it)."""

    def count_tokens(self, text: str) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, float32, L2-normalised; an empty input gives shape (0, dim)."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...
