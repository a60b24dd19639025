"""The VectorStore and LexicalIndex contracts, run against every backend: embedded
Chroma, a Chroma server over HTTP, and the BM25 index."""

from __future__ import annotations

import numpy as np
import pytest

from docqa.domain import Chunk
from docqa.errors import IndexMismatchError
from retrieval.protocols import SearchFilters

TEXTS = {
    "a": ("The boiler is serviced every October by the facilities team.", "ops.pdf", "pdf"),
    "b": ("Quarterly revenue rose eight percent on strong software sales.", "q3.docx", "docx"),
    "c": ("Fire drills happen twice a year; assemble in the north car park.", "ops.pdf", "pdf"),
    "d": ("The cafeteria offers vegetarian lunches on weekdays.", "canteen.md", "md"),
}


def _chunks() -> list[Chunk]:
    return [
        Chunk(
            chunk_id=f"doc_{src}:{cid}",
            document_id=f"doc_{src}",
            text=text,
            position=i,
            source=src,
            file_type=ft,
            page=1 if ft == "pdf" else None,
            section="S",
        )
        for i, (cid, (text, src, ft)) in enumerate(sorted(TEXTS.items()))
    ]


@pytest.fixture(params=["embedded", "server"])
def vectors(request, make_docqa):
    if request.param == "server":
        dq = make_docqa(chroma_url=request.getfixturevalue("chroma_server"))
    else:
        dq = make_docqa()
    index = dq.indexes.open(dq.indexes.new_name(), create=True)
    yield dq, index.vectors
    dq.indexes.chroma.delete_collection(index.vectors.name)


def test_vector_upsert_is_idempotent_and_query_ranks_by_cosine(vectors):
    dq, store = vectors
    chunks = _chunks()
    emb = dq.embedder.embed_documents([c.text for c in chunks])
    store.upsert(chunks, emb)
    store.upsert(chunks, emb)
    assert store.count() == 4
    hits = store.query(dq.embedder.embed_query("when is the boiler maintained"), 2)
    assert hits[0][0].chunk_id == "doc_ops.pdf:a"
    assert hits[0][1] > hits[1][1] and -1 <= hits[1][1] <= 1
    assert hits[0][0].page == 1 and hits[0][0].section == "S"


def test_vector_filters_and_deletes(vectors):
    dq, store = vectors
    chunks = _chunks()
    store.upsert(chunks, dq.embedder.embed_documents([c.text for c in chunks]))
    q = dq.embedder.embed_query("boiler service")
    only_docx = store.query(q, 4, SearchFilters(file_types=["docx"]))
    assert [c.file_type for c, _ in only_docx] == ["docx"]
    both = store.query(q, 4, SearchFilters(sources=["ops.pdf"], file_types=["pdf"]))
    assert {c.chunk_id for c, _ in both} == {"doc_ops.pdf:a", "doc_ops.pdf:c"}
    assert store.query(q, 4, SearchFilters(document_ids=["nope"])) == []
    store.delete(["doc_ops.pdf:a", "never-existed"])
    store.delete([])
    assert sorted(store.ids()) == ["doc_canteen.md:d", "doc_ops.pdf:c", "doc_q3.docx:b"]
    assert [c.chunk_id for c in store.get(["doc_q3.docx:b", "gone"])] == ["doc_q3.docx:b"]
    assert set(store.embeddings(["doc_q3.docx:b"])) == {"doc_q3.docx:b"}


def test_vector_store_records_its_model(vectors):
    dq, store = vectors
    assert store.spec.model == dq.embedder.model_id
    assert store.spec.dimension == 384


def test_empty_vector_store_answers_with_nothing(vectors):
    dq, store = vectors
    assert store.query(dq.embedder.embed_query("anything"), 5) == []


def test_bm25_index_follows_upserts_and_deletes(dq):
    index = dq.indexes.open("contract-bm25", create=True)
    lexical = index.lexical
    lexical.upsert(_chunks())
    g1 = lexical.generation()
    hits = lexical.search("fire drill assembly", 3)
    assert hits[0][0].chunk_id == "doc_ops.pdf:c"
    lexical.upsert(_chunks()[:1])
    assert lexical.count() == 4
    lexical.delete(["doc_ops.pdf:c"])
    assert lexical.generation() > g1
    assert all(c.chunk_id != "doc_ops.pdf:c" for c, _ in lexical.search("fire drill", 3))
    assert lexical.search("zzzz unknownword", 3) == []
    filtered = lexical.search("boiler revenue cafeteria", 4, SearchFilters(file_types=["md"]))
    assert [c.chunk_id for c, _ in filtered] == ["doc_canteen.md:d"]


def test_bm25_index_is_shared_between_processes_through_the_database(make_docqa, tmp_path):
    writer = make_docqa(data_dir=tmp_path / "shared")
    reader = make_docqa(data_dir=tmp_path / "shared")
    w = writer.indexes.open("shared-bm25", create=True).lexical
    r = reader.indexes.open("shared-bm25").lexical
    w.upsert(_chunks())
    assert r.search("cafeteria lunch", 1)[0][0].chunk_id == "doc_canteen.md:d"
    w.delete(["doc_canteen.md:d"])
    assert all(c.chunk_id != "doc_canteen.md:d" for c, _ in r.search("cafeteria lunch", 3))


def test_querying_an_index_built_by_another_model_is_an_error(make_docqa, tmp_path):
    dq = make_docqa(data_dir=tmp_path / "d")
    index = dq.indexes.current()
    meta = dict(index.vectors.collection.metadata)
    meta["docqa_model"] = "some/other-model"
    index.vectors.collection.modify(metadata=meta)
    fresh = make_docqa(data_dir=tmp_path / "d")
    with pytest.raises(IndexMismatchError, match="some/other-model"):
        fresh.retriever.retrieve("anything")


def test_embeddings_are_unit_length(dq):
    v = dq.embedder.embed_documents(["one text", "another text"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert dq.embedder.embed_documents([]).shape == (0, 384)
