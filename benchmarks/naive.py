"""The naive reference pipeline that docqa's ingestion is measured against (issue 15).

    unstructured `partition` (fast strategy for PDF)
    -> langchain `RecursiveCharacterTextSplitter(1000, 100)`
    -> `SentenceTransformer.encode`, fp32, batch 32
    -> Chroma `add`

Nothing else: no dedup, no record store, no keyword index, no retries. Each stage is timed
so the driver (benchmarks/ingest.py) can print where the seconds go on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 100
BATCH_SIZE = 32


def partition_text(path: Path) -> str:
    from unstructured.partition.auto import partition

    elements = partition(filename=str(path), strategy="fast")
    return "\n\n".join(str(e) for e in elements if str(e).strip())


def ingest(
    files: Iterable[Path], chroma_dir: Path, model_path: str, device: str = "cpu"
) -> dict[str, Any]:
    """Index `files` into a fresh Chroma collection under `chroma_dir`; returns stage
    seconds (imports and model loading under `load`) and counts (the collection is left
    for `NaiveSearch`)."""
    t = time.perf_counter()
    import chromadb
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from sentence_transformers import SentenceTransformer

    from ingestion.spacy_model import use_packaged_spacy_model

    use_packaged_spacy_model()  # offline: unstructured would download its spaCy model
    seconds = {"parse": 0.0, "chunk": 0.0, "embed": 0.0, "write": 0.0}
    model = SentenceTransformer(model_path, device=device)
    client = chromadb.PersistentClient(path=str(chroma_dir))
    collection = client.get_or_create_collection("naive")
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    seconds["load"] = time.perf_counter() - t
    max_batch = client.get_max_batch_size()
    chunks = 0
    for path in files:
        t0 = time.perf_counter()
        text = partition_text(path)
        t1 = time.perf_counter()
        pieces = splitter.split_text(text)
        t2 = time.perf_counter()
        if not pieces:
            seconds["parse"] += t1 - t0
            continue
        vectors = model.encode(pieces, batch_size=BATCH_SIZE, convert_to_numpy=True)
        t3 = time.perf_counter()
        for start in range(0, len(pieces), max_batch):
            part = pieces[start : start + max_batch]
            collection.add(
                ids=[f"{path.name}:{start + i}" for i in range(len(part))],
                embeddings=vectors[start : start + max_batch].tolist(),
                documents=part,
                metadatas=[{"source": str(path.resolve())} for _ in part],
            )
        t4 = time.perf_counter()
        seconds["parse"] += t1 - t0
        seconds["chunk"] += t2 - t1
        seconds["embed"] += t3 - t2
        seconds["write"] += t4 - t3
        chunks += len(pieces)
    return {"chunks": chunks, "stage_s": seconds}


class NaiveSearch:
    """Dense search over the naive collection (what the naive pipeline can answer with)."""

    def __init__(self, chroma_dir: Path, model_path: str, device: str = "cpu") -> None:
        import chromadb
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_path, device=device)
        self.collection = chromadb.PersistentClient(path=str(chroma_dir)).get_collection("naive")

    def search(self, questions: list[str], k: int) -> list[list[tuple[str, str]]]:
        """(source, text) of the k nearest chunks of every question."""
        vectors = self.model.encode(questions, batch_size=BATCH_SIZE, convert_to_numpy=True)
        found = self.collection.query(query_embeddings=vectors.tolist(), n_results=k)
        docs, metas = found["documents"] or [], found["metadatas"] or []
        return [
            [(str(m["source"]), d) for d, m in zip(ds, ms, strict=True)]
            for ds, ms in zip(docs, metas, strict=True)
        ]
