"""Retrieval quality on COVID-QA: the 48 articles ingested as documents, every question
searched, hit@k = a retrieved chunk of the gold article contains the normalised gold answer.

    .venv/bin/python -m benchmarks.covidqa_retrieval [--top-k 10] [--benchmark PATH]

The index is built once under benchmarks/results/covidqa/ and reused while the corpus and
the chunking settings are unchanged. Also prints the question-passage relevance of the
benchmark's questions next to that of off-topic questions, which is what the "not found"
threshold (DOCQA_ANSWER__MIN_RELEVANCE) is calibrated on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import docqa  # noqa: F401
from app import Docqa
from docqa.settings import load_settings
from evals.benchmark import Benchmark, load_benchmark, materialize
from evals.metrics import hit_at_k, reciprocal_rank
from evals.runner import judge_hits

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCHMARK = ROOT.parent / "shared" / "benchmarks" / "covidqa-dev.json"

# Questions no COVID-QA article answers: the negatives of the threshold calibration.
OFF_TOPIC = [
    "What is the capital of Mongolia?",
    "Who won the 1998 football World Cup?",
    "How do I reset my router password?",
    "What is the boiling point of ethanol?",
    "Who wrote Pride and Prejudice?",
    "How many moons does Jupiter have?",
    "What is the best way to cook risotto?",
    "When was the Eiffel Tower built?",
    "What programming language is the Linux kernel written in?",
    "How tall is Mount Kilimanjaro?",
    "What is the exchange rate of the euro to the yen?",
    "Who painted the Mona Lisa?",
    "How do I file a tax return in Germany?",
    "What is the speed of sound in water?",
    "Which team won the NBA finals in 2016?",
    "What are the rules of chess castling?",
    "How long does it take to fly from London to Sydney?",
    "What is a Fourier transform?",
    "How do you change a car tyre?",
    "What is the population of Canada?",
    "Who invented the telephone?",
    "What does a mortgage broker do?",
    "How is steel galvanized?",
    "What is the plot of Hamlet?",
    "What is the price of a Tesla Model 3?",
    "How do I install Python on Windows?",
    "What is quantitative easing?",
    "Which planet has the longest day?",
    "What is the recipe for sourdough bread?",
    "How many players are on a rugby union team?",
]


def build_index(dq: Docqa, bench: Benchmark) -> None:
    folder = dq.settings.data_dir / "documents"
    files = materialize(bench, folder)
    indexer = dq.indexer()
    t0 = time.perf_counter()
    results = indexer.ingest_paths(files.values())
    added = sum(r.outcome.value in ("added", "updated") for r in results)
    print(
        f"ingest: {len(results)} documents, {added} (re)indexed in {time.perf_counter() - t0:.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmark", type=Path, default=DEFAULT_BENCHMARK)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / "results" / "covidqa")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()

    dq = Docqa(load_settings(data_dir=args.data_dir))
    bench = load_benchmark(args.benchmark)
    build_index(dq, bench)
    questions = bench.questions[: args.limit] if args.limit else bench.questions
    by_doc = {
        d.doc_id: dq.settings.data_dir.joinpath("documents", d.filename).resolve()
        for d in bench.documents
    }
    retriever = dq.retriever
    hits: dict[int, list[float]] = {1: [], 5: [], 10: []}
    rr, relevance, latencies = [], [], []
    for q in questions:
        t0 = time.perf_counter()
        r = retriever.retrieve(q.question, args.top_k)
        latencies.append(time.perf_counter() - t0)
        gold_source = str(by_doc[q.document]) if q.document else None
        _, flags = judge_hits(r.hits, gold_source, q.answers)
        for k in hits:
            hits[k].append(hit_at_k(flags, k))
        rr.append(reciprocal_rank(flags, 10))
        relevance.append(r.nearest)
    off = [retriever.retrieve(q, 5).nearest for q in OFF_TOPIC]
    summary = {
        "questions": len(questions),
        **{f"hit@{k}": round(float(np.mean(v)), 3) for k, v in hits.items()},
        "mrr@10": round(float(np.mean(rr)), 3),
        "retrieve_ms_p50": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "retrieve_ms_p95": round(float(np.percentile(latencies, 95)) * 1000, 1),
        "relevance_benchmark_p01_p05_p50": [
            round(float(np.percentile(relevance, p)), 3) for p in (1, 5, 50)
        ],
        "relevance_off_topic_max_p95_p50": [
            round(float(x), 3) for x in (max(off), np.percentile(off, 95), np.percentile(off, 50))
        ],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
