"""The optional reranker: a sentence-transformers CrossEncoder read from a local folder.

None ships with docqa, so the stage is off unless `DOCQA_RETRIEVAL__RERANKER` names a
folder (a model saved with `CrossEncoder.save`, e.g. a cross-encoder/ms-marco-MiniLM
download copied onto the machine). Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from docqa.errors import ConfigurationError
from docqa.offline import enforce_offline
from docqa.settings import RetrievalSettings


class CrossEncoderReranker:
    """Scores (question, passage) pairs with a cross-encoder, on the CPU by default."""

    def __init__(self, folder: str | Path, *, device: str = "cpu", batch_size: int = 16) -> None:
        """:raises ConfigurationError: the folder does not hold a model."""
        path = Path(folder).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigurationError(
                f"DOCQA_RETRIEVAL__RERANKER={folder}: no model there (expected a "
                "sentence-transformers CrossEncoder folder with a config.json). Unset it to "
                "retrieve without a reranker."
            )
        self.model_id = path.resolve().name
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                enforce_offline()  # no hub, no telemetry
                try:
                    from sentence_transformers import CrossEncoder
                except ImportError as exc:  # pragma: no cover - a dependency of docqa
                    raise ImportError(
                        "the reranker needs sentence-transformers (pip install docqa)"
                    ) from exc
                self._model = CrossEncoder(
                    str(self.path), device=self.device, local_files_only=True
                )
            return self._model

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict(
            [(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(texts))


def open_reranker(settings: RetrievalSettings) -> CrossEncoderReranker | None:
    """The configured reranker, or None when `reranker` is unset."""
    if not settings.reranker:
        return None
    return CrossEncoderReranker(settings.reranker)
