"""The keyword index alone at 10k / 100k chunks: what a write costs before a search finds
it, in the writing process and in another one, against a rebuild from the whole corpus
(what docqa did before issue 15, in every process, after every write).

    .venv/bin/python -m benchmarks.keyword [--quick] [--sizes 10000,100000]

Synthetic chunks (150 words drawn from a Zipf-like vocabulary) in a fresh SQLite file; no
embedding model is loaded, so these figures are about the keyword index only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.child import report, run_child

ROOT = Path(__file__).resolve().parent.parent
WORDS_PER_CHUNK = 150
VOCAB = 20_000
QUERIES = 50

WRITER = """
import sys, time
from docqa.domain import Chunk
from retrieval.lexical import BM25Index
index = BM25Index(sys.argv[1], "bench")
index.upsert([Chunk(chunk_id="other", document_id="doc_other", text=sys.argv[2], position=0,
                    source="other.txt", file_type="txt")])
print(time.time(), flush=True)
sys.stdin.read()  # stay alive: the reader's figure must not include this process's exit
"""


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
    p = 1 / ranks
    p /= p.sum()
    vocab = [f"w{i}x" for i in range(VOCAB)]
    picks = rng.choice(VOCAB, size=(n, WORDS_PER_CHUNK), p=p)
    return [" ".join(vocab[j] for j in row) for row in picks]


def measure(size: int) -> dict[str, Any]:
    from docqa.domain import Chunk
    from retrieval.lexical import BM25Index

    def chunk(cid: str, text: str) -> Chunk:
        return Chunk(
            chunk_id=cid, document_id=f"doc_{cid}", text=text, position=0, source="s", file_type="t"
        )

    out: dict[str, Any] = {"chunks": size}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite"
        index = BM25Index(url, "bench", Path(tmp) / "bm25")
        texts = _texts(size, 15)
        t0 = time.perf_counter()
        for start in range(0, size, 5000):
            index.upsert(
                [chunk(f"c{start + i}", t) for i, t in enumerate(texts[start : start + 5000])]
            )
        out["load_rows_s"] = round(time.perf_counter() - t0, 2)
        queries = [" ".join(q.split()[:6]) for q in _texts(QUERIES, 16)]

        t0 = time.perf_counter()
        index.search(queries[0], 10)
        out["first_search_cold_s"] = round(time.perf_counter() - t0, 2)

        restarted = BM25Index(url, "bench", Path(tmp) / "bm25")
        t0 = time.perf_counter()
        restarted.search(queries[0], 10)
        out["first_search_after_restart_s"] = round(time.perf_counter() - t0, 2)

        latencies = []
        for q in queries:
            t0 = time.perf_counter()
            index.search(q, 60)
            latencies.append((time.perf_counter() - t0) * 1000)
        out["search_ms_p50_p95"] = [round(float(np.percentile(latencies, p)), 1) for p in (50, 95)]

        # One small write in this process, then the next search.
        t0 = time.perf_counter()
        index.upsert([chunk("new", "quokkavirology outbreak in marsupials")])
        t1 = time.perf_counter()
        found = index.search("quokkavirology", 3)
        t2 = time.perf_counter()
        assert found and found[0][0].chunk_id == "new"
        out["write_s"] = round(t1 - t0, 3)
        out["write_to_found_same_process_s"] = round(t2 - t0, 3)

        # A write in another process, then this process's next search.
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, url, "wallabyfever in the outback"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdout is not None and proc.stdin is not None
            committed = float(proc.stdout.readline())
            found = index.search("wallabyfever", 3)
            out["other_process_write_to_found_s"] = round(time.time() - committed, 3)
            proc.stdin.close()
        assert found and found[0][0].chunk_id == "other"

        # The reference: rebuilding bm25s from every row, as each process did per write.
        import bm25s
        import Stemmer
        from sqlalchemy import select

        from retrieval.lexical import lexical_chunks

        t0 = time.perf_counter()
        with index.engine.connect() as conn:
            rows = conn.execute(
                select(lexical_chunks.c.chunk_id, lexical_chunks.c.text, lexical_chunks.c.meta)
                .where(lexical_chunks.c.collection == "bench")
                .order_by(lexical_chunks.c.chunk_id)
            ).all()
        retriever = bm25s.BM25()
        tokens = bm25s.tokenize(
            [r[1] for r in rows],
            stopwords="en",
            stemmer=Stemmer.Stemmer("english"),
            show_progress=False,
        )
        retriever.index(tokens, show_progress=False)
        out["rebuild_reference_s"] = round(time.perf_counter() - t0, 2)
    return out


def run(quick: bool, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or ([10_000] if quick else [10_000, 100_000])
    rows = []
    for size in sizes:
        rows.append(run_child("benchmarks.keyword", "--one", str(size)))
    lines = [
        "| chunks | write -> found, same process s | write -> found, other process s "
        "| rebuild from all rows (before) s | search p50/p95 ms | first search: cold / "
        "after restart s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['chunks']:,} | {r['write_to_found_same_process_s']} "
            f"| {r['other_process_write_to_found_s']} | {r['rebuild_reference_s']} "
            f"| {r['search_ms_p50_p95'][0]} / {r['search_ms_p50_p95'][1]} "
            f"| {r['first_search_cold_s']} / {r['first_search_after_restart_s']} |"
        )
    lines.append(
        "\n`rebuild from all rows`: reading every row and indexing it with bm25s, which "
        "docqa did in every process after every write before the incremental index. "
        "`other process`: from the writer's commit to this process's search returning it."
    )
    return {"rows": rows, "markdown": "\n".join(lines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k chunks only")
    ap.add_argument("--sizes", default="")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        report(measure(args.one))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s] or None
    print(run(args.quick, sizes)["markdown"])


if __name__ == "__main__":
    main()
