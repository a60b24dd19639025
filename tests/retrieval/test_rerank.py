"""The optional reranker: a CrossEncoder folder reorders the fused candidates.

No cross-encoder is installed, so the plumbing is tested with a tiny BERT built here (random
weights: its scores mean nothing, only that they flow through), and the reordering with a
reranker whose scores are known.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from docqa.domain import Chunk
from docqa.errors import ConfigurationError
from docqa.settings import RetrievalSettings, load_settings
from retrieval.hybrid import HybridRetriever
from retrieval.rerank import CrossEncoderReranker, open_reranker

WORDS = "the a office is in copenhagen parking garage level holiday days paid where how".split()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer BERT with one output, saved as a CrossEncoder folder (no download)."""
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        num_labels=1,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Round-trip through sentence-transformers so the folder is what CrossEncoder.save writes.
    CrossEncoder(str(folder), device="cpu", local_files_only=True).save(str(folder))
    return folder


def test_a_cross_encoder_folder_scores_each_pair(tiny_cross_encoder):
    reranker = CrossEncoderReranker(tiny_cross_encoder)
    scores = reranker.score("where is the office", ["the office is in copenhagen", "paid days"])
    assert scores.shape == (2,)
    assert np.isfinite(scores).all()
    assert reranker.score("where is the office", []).shape == (0,)


def test_no_reranker_unless_a_folder_is_set(tmp_path):
    assert open_reranker(RetrievalSettings()) is None
    with pytest.raises(ConfigurationError, match="DOCQA_RETRIEVAL__RERANKER"):
        open_reranker(RetrievalSettings(reranker=str(tmp_path / "missing")))


class KnownScores:
    """A reranker that prefers passages holding a word."""

    model_id = "known"

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls = 0

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([float(self.word in t) for t in texts], dtype=np.float32)


class Stores:
    """The two stores' read side, as much as `rank` uses."""

    def coverage(self, query: str, texts: Sequence[str]) -> list[float]:
        return [1.0] * len(texts)

    def embeddings(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {cid: np.zeros(3, dtype=np.float32) for cid in chunk_ids}


def chunk(cid: str, text: str) -> Chunk:
    return Chunk(cid, "d", text, 0, "s", "txt")


def test_the_reranker_reorders_the_fused_candidates_and_reports_its_score():
    dense = [(chunk(f"c{i}", f"passage {i}"), 0.9 - i / 100) for i in range(8)]
    dense.append((chunk("gold", "the garage is on level two"), 0.5))
    reranker = KnownScores("garage")
    settings = RetrievalSettings(fusion="rrf", rerank_candidates=20)
    retriever = HybridRetriever(None, Stores(), Stores(), settings, reranker)  # type: ignore[arg-type]
    result = retriever.rank("where do I park", np.ones(3), dense, [], top_k=3)
    assert result.hits[0].chunk.chunk_id == "gold"
    assert len(result.hits) == 3
    assert result.signals["rerank"] == 1.0
    assert "rerank" in result.timings_ms
    assert reranker.calls == 1


def test_without_a_reranker_the_fused_order_stands():
    dense = [(chunk(f"c{i}", f"passage {i}"), 0.9 - i / 100) for i in range(5)]
    retriever = HybridRetriever(None, Stores(), Stores(), RetrievalSettings(fusion="rrf"))  # type: ignore[arg-type]
    result = retriever.rank("q", np.ones(3), dense, [], top_k=3)
    assert [h.chunk.chunk_id for h in result.hits] == ["c0", "c1", "c2"]
    assert "rerank" not in result.signals


def test_docqa_retrieves_through_a_configured_cross_encoder(tiny_cross_encoder, tmp_path, embedder):
    from app import Docqa

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "office.md").write_text("# Office\n\nThe office is in Copenhagen, Strandgade 93.\n")
    (docs / "parking.md").write_text("# Parking\n\nVisitors park in garage B on level two.\n")
    settings = load_settings(
        data_dir=tmp_path / "data", retrieval={"reranker": str(tiny_cross_encoder)}
    )
    dq = Docqa(settings, embedder=embedder)
    dq.indexer().ingest_paths(sorted(docs.iterdir()))
    result = dq.retriever.retrieve("where is the office", top_k=2)
    assert len(result.hits) == 2
    assert result.hits[0].score >= result.hits[1].score
    assert "rerank" in result.signals and "rerank" in result.timings_ms
