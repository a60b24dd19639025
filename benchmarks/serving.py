"""Serving at 10k and 100k chunks: `/v1/ask` latency, requests/s, the first search after a
start, one small upload until a search finds it, and the serving process's RSS.

    .venv/bin/python -m benchmarks.serving [--quick] [--sizes 10000,100000]

The index holds covidqa-dev's articles, ingested by docqa (quick: the first 12), padded to
the size with synthetic chunks: random unit vectors straight into Chroma, text drawn from
the articles' word frequencies (eight sentences a chunk) into the keyword index, and random
kept sentence vectors (nothing embedded). Padded
indexes are kept under benchmarks/results/serving/ and reused. Each size is measured in a
fresh process (its RSS and its start-up are the figures). The extractive answerer, answer
cache off, one question at a time unless a concurrency is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.child import report, run_child

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DOCQA_SHARED_DIR", ROOT.parent / "shared"))
COVIDQA = SHARED / "benchmarks" / "covidqa-dev.json"
STORE = ROOT / "benchmarks" / "results" / "serving"
QUICK_ARTICLES = 12
PAD_BATCH = 5000
PAD_WORDS = 150
PAD_SENTENCES = 8
UPLOAD_WORD = "quokkavirology"
# The default embedding backend; `--backend torch,onnx-int8` adds the fp32 one.
BACKENDS = ("onnx-int8",)


def _p(values: list[float], q: int) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def _settings(data: Path, backend: str = "onnx-int8") -> Any:
    from docqa.settings import load_settings

    return load_settings(
        data_dir=data,
        answer={"cache_ttl_s": 0},
        embedding={"backend": backend},
    )


# -- building the padded indexes -------------------------------------------------------


def _base(quick: bool) -> Path:
    """covidqa-dev's articles ingested by docqa (built once, then copied for each size)."""
    import docqa  # noqa: F401
    from app import Docqa
    from evals.benchmark import load_benchmark, materialize

    data = STORE / ("base-quick" if quick else "base")
    if (data / "built.json").exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    bench = load_benchmark(COVIDQA)
    if quick:
        bench.documents = bench.documents[:QUICK_ARTICLES]
    dq = Docqa(_settings(data))
    files = materialize(bench, data / "documents")
    results = dq.indexer().ingest_paths(sorted(files.values()))
    (data / "built.json").write_text(json.dumps({"chunks": sum(r.chunks for r in results)}))
    return data


def build(size: int, quick: bool) -> Path:
    """The base index padded with synthetic chunks to `size` chunks."""
    import docqa  # noqa: F401
    from app import Docqa
    from docqa.domain import Chunk
    from docqa.text import passage_sentences

    data = STORE / f"{size}{'-quick' if quick else ''}"
    if (data / "built.json").exists():
        return data
    base = _base(quick)
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(base, data, ignore=shutil.ignore_patterns("built.json", "bm25"))
    dq = Docqa(_settings(data))
    index = dq.indexes.current()
    have = index.vectors.count()
    words = Counter(
        w.lower()
        for f in (data / "documents").iterdir()
        for w in re.findall(r"[A-Za-z][A-Za-z-]+", f.read_text(encoding="utf-8"))
    )
    vocab = list(words)
    freq = np.array([words[w] for w in vocab], dtype=np.float64)
    freq /= freq.sum()
    rng = np.random.default_rng(15)
    dim = dq.embedder.dimension
    t0 = time.perf_counter()
    for start in range(have, size, PAD_BATCH):
        n = min(PAD_BATCH, size - start)
        picks = rng.choice(len(vocab), size=(n, PAD_WORDS), p=freq)
        chunks = [
            Chunk(
                chunk_id=f"pad_{start + i // 20}:{start + i}",
                document_id=f"pad_{(start + i) // 20}",
                text=_sentences([vocab[j] for j in row]),
                position=(start + i) % 20,
                source=f"padding/{(start + i) // 20}.txt",
                file_type="txt",
            )
            for i, row in enumerate(picks)
        ]
        # Kept sentence vectors too, as ingestion keeps for every chunk: random ones, one
        # per sentence the answerer will read (the database grows as a real index's would).
        kept = {c.chunk_id: _unit(rng, len(passage_sentences(c.text)), dim) for c in chunks}
        index.upsert(chunks, _unit(rng, n, dim), kept)
        _record(dq, chunks)
    # One search builds the keyword index and saves it, as a serving process would have.
    index.lexical.search("warm up", 1)
    (data / "built.json").write_text(
        json.dumps({"size": size, "real": have, "pad_s": round(time.perf_counter() - t0, 1)})
    )
    return data


def _sentences(words: list[str]) -> str:
    """Padding words as PAD_SENTENCES sentences (capitalised, each ending in a stop)."""
    parts = [" ".join(part) for part in np.array_split(np.array(words), PAD_SENTENCES)]
    return " ".join(f"{p[:1].upper()}{p[1:]}." for p in parts if p)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _record(dq: Any, chunks: list[Any]) -> None:
    """Give the padding documents records, as ingestion would: a serving process's start-up
    repair removes chunks no record names (the first version of this benchmark lost its
    padding to it as soon as the API started)."""
    by_document: dict[str, list[str]] = {}
    for c in chunks:
        by_document.setdefault(c.document_id, []).append(c.chunk_id)
    fingerprint = dq.index_fingerprint()
    for document_id, ids in by_document.items():
        # A padding document can span two batches: keep the chunks the first one gave it
        # (committing only the new ones would journal those as stale, and repair drops them).
        earlier = dq.records.get(document_id)
        ids = (earlier.chunk_ids if earlier else []) + ids
        source = f"padding/{document_id}.txt"
        dq.records.begin_indexing(
            document_id, source=source, file_type="txt", pending_chunk_ids=ids
        )
        dq.records.commit_indexing(
            document_id,
            content_hash=document_id,
            index_fingerprint=fingerprint,
            model=dq.embedder.model_id,
            warnings=[],
            size_bytes=0,
        )


# -- measuring one size (in its own process) ----------------------------------------------


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


async def _rps(url: str, questions: list[str], concurrency: int) -> float:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(q: str) -> None:
            async with gate:
                r = await client.post("/v1/ask", json={"question": q})
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(q) for q in questions))
        return len(questions) / (time.perf_counter() - t0)


def _upload(dq: Any, data: Path, word: str) -> tuple[float, float | None]:
    """Ingest one small .txt, then search until a search returns it: (ingest s, ingest to
    found s; None when not found within a minute)."""
    doc = data / "upload" / f"upload-{time.time_ns()}.txt"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(f"The {word} unit reported that the strain spreads in marsupials.\n")
    t1 = time.perf_counter()
    dq.indexer().ingest_file(doc)
    t2 = time.perf_counter()
    while time.perf_counter() - t2 < 60:
        hits = dq.retriever.retrieve(f"{word} marsupials").hits
        if any(word in h.chunk.text for h in hits):
            return round(t2 - t1, 2), round(time.perf_counter() - t1, 2)
    return round(t2 - t1, 2), None


def measure(data: Path, quick: bool, http: bool, backend: str) -> dict[str, Any]:
    t_import = time.perf_counter()
    import docqa  # noqa: F401
    from app import Docqa
    from evals.benchmark import load_benchmark

    bench = load_benchmark(COVIDQA)
    every = [q.question for q in bench.questions]
    questions = every[: 40 if quick else 100]
    # The requests/s part asks other questions: answers are not cached, but the sentence
    # vectors of passages already quoted are (inference/extractive.py).
    unseen = iter(every[len(questions) :])
    t0 = time.perf_counter()
    dq = Docqa(_settings(data, backend))
    dq.answering.ask(questions[0])
    first = time.perf_counter() - t0
    imports = t0 - t_import
    totals, retrieve, generate = [], [], []
    stages: dict[str, list[float]] = {}
    for q in questions[1:]:
        a = dq.answering.ask(q)
        totals.append(a.timings_ms["total"])
        retrieve.append(a.timings_ms["retrieve"])
        generate.append(a.timings_ms["generate"])
    dq.embedder.__dict__.pop("_queries", None)  # embed each question again (stage split)
    for q in questions[1:]:
        for stage, ms in dq.retriever.retrieve(q).timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    rss_after_asks = _rss_mb()

    # Small uploads, each followed by searches until one finds it. The first pays for
    # loading the parser (unstructured, spaCy); the second is what every later one costs.
    uploads = [_upload(dq, data, f"{UPLOAD_WORD}{n}") for n in range(2)]
    out: dict[str, Any] = {
        "chunks": dq.indexes.current().vectors.count(),
        "imports_s": round(imports, 2),
        "first_ask_s": round(first, 2),
        "ask_ms": {"p50": _p(totals, 50), "p95": _p(totals, 95)},
        "retrieve_ms": {"p50": _p(retrieve, 50), "p95": _p(retrieve, 95)},
        "generate_ms": {"p50": _p(generate, 50), "p95": _p(generate, 95)},
        "retrieval_stages_ms_p50": {s: _p(v, 50) for s, v in stages.items()},
        "upload_ingest_s": uploads[1][0],
        "upload_to_found_s": uploads[1][1],
        "first_upload_to_found_s": uploads[0][1],
        "rss_mb": round(rss_after_asks),
    }
    if http:
        from api.main import create_app
        from tests.fakes.loopback import serve

        served = serve(create_app(docqa=dq))
        try:
            out["rps"] = {
                c: round(
                    asyncio.run(
                        _rps(served.url, [next(unseen) for _ in range(20 if quick else 32)], c)
                    ),
                    1,
                )
                for c in (1, 8, 32)
            }
        finally:
            served.stop()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["rss_end_mb"] = round(_rss_mb())
    return out


# -- the section ---------------------------------------------------------------------------


def run(
    quick: bool,
    sizes: list[int] | None = None,
    http: bool = True,
    backends: tuple[str, ...] = BACKENDS,
) -> dict[str, Any]:
    if not COVIDQA.exists():
        return {"markdown": f"skipped: {COVIDQA} not found"}
    sizes = sizes or ([10_000] if quick else [10_000, 100_000])
    rows = []
    for size in sizes:
        flags = ["--quick"] if quick else []
        built = run_child("benchmarks.serving", "--build", str(size), *flags)
        for backend in backends:
            row = run_child(
                "benchmarks.serving",
                "--measure",
                built["data"],
                "--backend",
                backend,
                *flags,
                *([] if http else ["--no-http"]),
            )
            rows.append({"size": size, "backend": backend, **row})
    return {"rows": rows, "markdown": markdown(rows)}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| chunks | embedding | ask p50 ms | ask p95 ms | retrieve p50/p95 | generate p50/p95 "
        "| embed/dense/lexical/fuse/sentences p50 ms | first ask after start s "
        "| upload -> found s (ingest) | req/s at 1/8/32 | RSS MB (peak) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        st = r["retrieval_stages_ms_p50"]
        rps = r.get("rps") or {}
        lines.append(
            f"| {r['chunks']:,} | {r['backend']} | {r['ask_ms']['p50']} | {r['ask_ms']['p95']} "
            f"| {r['retrieve_ms']['p50']} / {r['retrieve_ms']['p95']} "
            f"| {r['generate_ms']['p50']} / {r['generate_ms']['p95']} "
            f"| {st.get('embed')} / {st.get('dense')} / {st.get('lexical')} / {st.get('fuse')} "
            f"/ {st.get('sentences', '-')} "
            f"| {r['first_ask_s']} | {r['upload_to_found_s']} ({r['upload_ingest_s']}; "
            f"first: {r.get('first_upload_to_found_s')}) "
            f"| {' / '.join(str(rps.get(str(c), rps.get(c, '-'))) for c in (1, 8, 32))} "
            f"| {r['rss_mb']} ({r['peak_rss_mb']}) |"
        )
    lines.append(
        "\nIndexes padded with synthetic chunks (random unit vectors, text drawn from the "
        "articles' word frequencies, random kept sentence vectors); extractive answerer, "
        "answer cache off. `first ask`: "
        "from opening docqa in a fresh process to the first answer (model, Chroma and keyword "
        "index loaded). `upload -> found`: ingest one small .txt, then search until a search "
        "returns it (in brackets: the ingest call alone, and the first upload of the process, "
        "which loads the parser). The real articles were ingested by docqa with the "
        "`embedding` backend, which also embeds the questions and the upload. req/s "
        "through the API (uvicorn, one worker, embedded Chroma) with an async httpx client."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 articles, 10k chunks, fewer asks")
    ap.add_argument("--sizes", default="", help="comma-separated chunk counts")
    ap.add_argument("--no-http", action="store_true", help="skip the requests/s part")
    ap.add_argument("--build", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--backend", default="", help="onnx-int8 (default), torch, or both comma-separated"
    )
    args = ap.parse_args()
    if args.build:
        report({"data": str(build(args.build, args.quick))})
        return
    if args.measure:
        backend = args.backend or BACKENDS[0]
        report(measure(args.measure, args.quick, not args.no_http, backend))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s] or None
    backends = tuple(b for b in args.backend.split(",") if b) or BACKENDS
    print(run(args.quick, sizes, not args.no_http, backends)["markdown"])


if __name__ == "__main__":
    main()
