"""Sentence vectors kept at ingestion: pooled from the chunk's own forward pass, stored
beside the collection, handed to the extractive answerer with the hits, and gone with
their chunks; the answerer then embeds nothing but the question."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from docqa.domain import Chunk, ScoredChunk
from docqa.settings import AnswerSettings
from docqa.text import MAX_SENTENCE_CHARS, passage_sentences, sentence_spans
from inference.extractive import ExtractiveGenerator
from retrieval.protocols import SentencePooling
from retrieval.sentences import SentenceVectorStore
from tests.fakes.counting import CountingEmbedder

TEXT = (
    "The boiler is serviced every October by Heating Ltd. "
    "Visitors sign in at the front desk and wear a badge.\n"
    "The fire assembly point is the north car park."
)


def test_sentence_spans_locate_each_sentence_the_answerer_reads():
    text = "Short one here. A cut word: applica- tions of it.\nLast line " + "x" * 700
    sentences = passage_sentences(text)
    spans = sentence_spans(text)
    assert len(spans) == len(sentences) == 3
    assert text[slice(*spans[0])] == sentences[0] == "Short one here."
    # The repaired hyphen makes the answerer's sentence differ from the chunk's text.
    assert sentences[1] == "A cut word: applications of it." and spans[1] == (0, 0)
    # A sentence cut at MAX_SENTENCE_CHARS (ellipsis added) is located by what it kept.
    assert spans[2][1] - spans[2][0] == MAX_SENTENCE_CHARS


@pytest.fixture(params=["configured", "torch", "torch-bfloat16"])
def pooling_embedder(request, embedder):
    """The configured backend, the torch one (what a GPU uses) and torch in bfloat16 (what
    a CPU with AMX is fastest with)."""
    if request.param == "configured":
        return embedder
    from app.container import build_embedder
    from docqa.settings import load_settings

    dtype = "bfloat16" if request.param.endswith("bfloat16") else "float32"
    return build_embedder(load_settings(embedding={"backend": "torch", "dtype": dtype}))


def test_pooled_sentence_vectors_come_with_the_chunk_vectors(pooling_embedder):
    embedder = pooling_embedder
    if not isinstance(embedder, SentencePooling):
        pytest.skip("the configured embedding backend does not pool sentences")
    spans = [*sentence_spans(TEXT), (0, 0)]
    vectors, pooled = embedder.embed_documents_pooled([TEXT, "A second chunk."], [spans, []])
    np.testing.assert_allclose(
        vectors, embedder.embed_documents([TEXT, "A second chunk."]), rtol=1e-5, atol=1e-6
    )
    assert pooled[0].shape == (4, embedder.dimension) and pooled[1].shape == (0, 384)
    np.testing.assert_allclose(np.linalg.norm(pooled[0][:3], axis=1), 1.0, rtol=1e-5)
    assert not pooled[0][3].any()  # (0, 0): no tokens, a zero row
    # Each pooled sentence is nearest its own sentence embedded alone.
    alone = embedder.embed_documents(passage_sentences(TEXT))
    assert list(np.argmax(pooled[0][:3] @ alone.T, axis=1)) == [0, 1, 2]


def test_the_store_keeps_int8_rows_per_chunk(tmp_path: Path):
    store = SentenceVectorStore(f"sqlite:///{tmp_path / 'db.sqlite'}", "docs")
    other = SentenceVectorStore(f"sqlite:///{tmp_path / 'db.sqlite'}", "other")
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[1] = 0.0
    store.upsert({"c1": rows, "c2": rows[:1]})
    other.upsert({"c1": rows[:2]})
    got = store.get(["c1", "c2", "missing"])
    assert set(got) == {"c1", "c2"} and got["c1"].shape == (3, 384)
    assert np.min(np.sum(got["c1"][[0, 2]] * rows[[0, 2]], axis=1)) > 0.9999
    assert not got["c1"][1].any()
    store.upsert({"c1": rows[:1]})  # replaced, not appended
    assert store.get(["c1"])["c1"].shape == (1, 384)
    store.delete(["c1"])
    assert set(store.get(["c1", "c2"])) == {"c2"} and store.count() == 1
    store.drop()
    assert store.count() == 0 and other.count() == 1


def test_the_answerer_scores_kept_vectors_without_embedding_them(embedder):
    if not isinstance(embedder, SentencePooling):
        pytest.skip("the configured embedding backend does not pool sentences")
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, AnswerSettings())  # type: ignore[arg-type]
    _, pooled = embedder.embed_documents_pooled([TEXT], [sentence_spans(TEXT)])
    chunk = Chunk("c1", "doc_1", TEXT, 0, "house.txt", "txt", section="House")
    kept = ScoredChunk(chunk, score=1.0, relevance=0.6, sentence_vectors=pooled[0])
    answer = gen.generate("When is the boiler serviced?", [kept])
    assert answer.found and answer.text.startswith("The boiler is serviced every October")
    assert counting.documents == 0
    # Vectors that do not match the passage's sentences (another splitter) are not used.
    stale = ScoredChunk(chunk, score=1.0, relevance=0.6, sentence_vectors=pooled[0][:2])
    answer = gen.generate("Where do visitors sign in?", [stale])
    assert answer.text.startswith("Visitors sign in at the front desk")
    assert counting.documents > 0


def _house(tmp_path: Path) -> Path:
    doc = tmp_path / "house.txt"
    doc.write_text(TEXT + "\n\n" + " ".join(f"Room {i} holds {i} chairs." for i in range(80)))
    return doc


def test_ingestion_keeps_them_and_deleting_a_document_removes_them(dq, tmp_path: Path):
    if not isinstance(dq.embedder, SentencePooling):
        pytest.skip("the configured embedding backend does not pool sentences")
    [result] = dq.indexer().ingest_paths([_house(tmp_path)])
    index = dq.indexes.current()
    assert index.sentences is not None and index.sentences.count() == result.chunks > 1
    retrieval = dq.retriever.retrieve("When is the boiler serviced?")
    top = retrieval.hits[0]
    assert top.sentence_vectors is not None
    assert len(top.sentence_vectors) == len(passage_sentences(top.chunk.text))
    assert "sentences" in retrieval.timings_ms
    counting = CountingEmbedder(dq.embedder)
    dq.extractive.embedder = counting
    answer = dq.answering.ask("When is the boiler serviced?")
    assert "every October" in answer.text and counting.documents == 0
    dq.indexer().delete_document(result.document_id)
    assert index.sentences.count() == 0


def test_switched_off_nothing_is_kept_and_answers_still_come(make_docqa, tmp_path: Path):
    dq = make_docqa(ingestion={"sentence_vectors": False})
    [result] = dq.indexer().ingest_paths([_house(tmp_path)])
    index = dq.indexes.current()
    assert index.sentences is not None and index.sentences.count() == 0
    assert "every October" in dq.answering.ask("When is the boiler serviced?").text
    # Switched on later, a forced ingest (or a re-index) gives the same chunks their vectors.
    on = make_docqa()
    if not isinstance(on.embedder, SentencePooling):
        return
    [again] = on.indexer().ingest_paths([_house(tmp_path)], force=True)
    assert again.chunks == result.chunks
    assert on.indexes.current().sentences.count() == result.chunks


def test_torch_pools_a_long_document_a_slice_at_a_time(monkeypatch):
    from app.container import build_embedder
    from docqa.settings import load_settings
    from ingestion import embed

    torch_embedder = build_embedder(load_settings(embedding={"backend": "torch"}))
    texts = [TEXT, "A second chunk. It has two sentences.", "Third."]
    spans = [sentence_spans(t) for t in texts]
    whole = torch_embedder.embed_documents_pooled(texts, spans)
    monkeypatch.setattr(embed, "_POOLED_SLICE", 2)
    sliced = torch_embedder.embed_documents_pooled(texts, spans)
    np.testing.assert_allclose(sliced[0], whole[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(sliced[1], whole[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert [len(p) for p in sliced[1]] == [3, 2, 1]
