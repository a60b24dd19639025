"""Retrieval and answer quality on every question set, per retrieval variant (issue 13).

    .venv/bin/python -m benchmarks.quality [--data-dir DIR] [--variants a,b] [--served]

Sets: COVID-QA dev (shared/benchmarks/covidqa-dev.json, its 48 articles) and the team's
sets in benchmarks/sets (paraphrase, technical, unanswerable) over shared/corpus/{formats,
large}. Each corpus is ingested once into DIR (default benchmarks/results/quality) and
reused while unchanged. The 30 off-topic questions of benchmarks/covidqa_retrieval.py join
the unanswerable ones as negatives over the COVID-QA index.

Every question is embedded and searched once (dense and BM25 candidates); each variant is
a set of retrieval settings applied to those candidates through `HybridRetriever.rank`, the
code path of a served search. Per variant and set it prints hit@1, hit@5, MRR@10 (a hit: a
passage of the gold document holding a gold answer) and, for the variants answered, the
share of answers holding a gold answer, citation precision (citations of the gold
document), and the not-found rates: answerable questions wrongly refused, unanswerable
questions wrongly answered.

`--served` instead asks through `Docqa.answering` and `Docqa.retriever` with the
settings as configured (what `/v1/ask` does), for a before/after of the whole service.

Results go to benchmarks/results/quality-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import docqa  # noqa: F401
from app import Docqa
from docqa.domain import Answer, Chunk
from docqa.settings import load_settings
from evals.benchmark import load_benchmark, materialize
from evals.metrics import contains_answer, first_hit_rank, strip_citations
from evals.runner import judge_hits

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SETS = ROOT / "benchmarks" / "sets"
RESULTS = ROOT / "benchmarks" / "results"
DEPTH = 10

# Retrieval settings per variant (over the configured ones). "before" is docqa as tuned
# on COVID-QA alone.
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"fusion": "weighted", "rrf_k": 20, "dense_weight": 1.0, "lexical_weight": 1.5},
    "dense": {"fusion": "weighted", "dense_weight": 1.0, "lexical_weight": 0.0},
    "bm25": {"fusion": "weighted", "dense_weight": 0.0, "lexical_weight": 1.0},
    "rrf60": {"fusion": "rrf", "rrf_k": 60},
    "rrf20": {"fusion": "rrf", "rrf_k": 20},
    "score.5": {"fusion": "score", "score_alpha": 0.5},
    "score.6": {"fusion": "score", "score_alpha": 0.6},
    "adaptive": {"fusion": "adaptive"},
}


@dataclass
class Question:
    qid: str
    text: str
    answers: list[str]
    gold_source: str | None  # None: unanswerable


@dataclass
class QuestionSet:
    name: str
    index: str  # "covidqa" or "corpus"
    questions: list[Question]


@dataclass
class Candidates:
    embedding: np.ndarray
    dense: list[tuple[Chunk, float]]
    lexical: list[tuple[Chunk, float]]


@dataclass
class Tally:
    hit1: list[float] = field(default_factory=list)
    hit5: list[float] = field(default_factory=list)
    rr: list[float] = field(default_factory=list)
    contains: list[float] = field(default_factory=list)
    cited: int = 0
    cited_gold: int = 0
    answerable: int = 0
    refused: int = 0
    unanswerable: int = 0
    answered: int = 0
    ms: list[float] = field(default_factory=list)

    def add_ranking(self, relevant: Sequence[bool]) -> None:
        rank = first_hit_rank(relevant[:DEPTH])
        self.hit1.append(float(rank == 1))
        self.hit5.append(float(rank is not None and rank <= 5))
        self.rr.append(1.0 / rank if rank else 0.0)

    def add_answer(self, q: Question, answer: Answer) -> None:
        if q.gold_source is None:
            self.unanswerable += 1
            self.answered += answer.found
            return
        self.answerable += 1
        self.refused += not answer.found
        found = answer.found and contains_answer(strip_citations(answer.text), q.answers)
        self.contains.append(float(found))
        if answer.found:
            self.cited += len(answer.citations)
            self.cited_gold += sum(c.source == q.gold_source for c in answer.citations)

    def summary(self) -> dict[str, float | int | None]:
        def mean(values: list[float]) -> float | None:
            return round(float(np.mean(values)), 3) if values else None

        return {
            "hit@1": mean(self.hit1),
            "hit@5": mean(self.hit5),
            "mrr@10": mean(self.rr),
            "contains": mean(self.contains),
            "citation_precision": round(self.cited_gold / self.cited, 3) if self.cited else None,
            "wrongly_refused": round(self.refused / self.answerable, 3)
            if self.answerable
            else None,
            "wrongly_answered": round(self.answered / self.unanswerable, 3)
            if self.unanswerable
            else None,
            "rank_ms_p50": round(float(np.percentile(self.ms, 50)), 2) if self.ms else None,
        }


def question_sets(data_dir: Path) -> list[QuestionSet]:
    from benchmarks.covidqa_retrieval import OFF_TOPIC
    from ingestion.pipeline import source_for

    sets = []
    covid = SHARED / "benchmarks" / "covidqa-dev.json"
    if covid.exists():
        bench = load_benchmark(covid)
        files = materialize(bench, data_dir / "covidqa-docs")
        questions = [
            Question(q.qid, q.question, list(q.answers), source_for(files[q.document]))
            for q in bench.questions
            if q.document
        ]
        off = [Question(f"off-topic-{i}", t, [], None) for i, t in enumerate(OFF_TOPIC)]
        sets.append(QuestionSet("covidqa-dev", "covidqa", questions + off))
    corpus = SHARED / "corpus"
    for name in ("paraphrase", "technical", "unanswerable"):
        path = SETS / f"{name}.jsonl"
        if not path.exists() or not corpus.exists():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        questions = [
            Question(
                r["id"],
                r["question"],
                list(r["answers"]),
                source_for(corpus / r["document"]) if r.get("document") else None,
            )
            for r in rows
        ]
        sets.append(QuestionSet(name, "corpus", questions))
    return sets


def open_index(data_dir: Path, name: str, **overrides: Any) -> Docqa:
    """The docqa over one evaluation corpus, ingested on first use (unchanged files are
    skipped on later runs)."""
    from ingestion.pipeline import iter_files

    dq = Docqa(load_settings(data_dir=data_dir / name, **overrides))
    if name == "covidqa":
        files = sorted((data_dir / "covidqa-docs").glob("*.txt"))
    else:
        corpus = SHARED / "corpus"
        files = sorted(iter_files([corpus / "formats", corpus / "large"]))
    t0 = time.perf_counter()
    results = dq.indexer().ingest_paths(files)
    fresh = sum(r.outcome.value in ("added", "updated") for r in results)
    if fresh:
        print(
            f"ingested {fresh} of {len(files)} files into {name} in "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return dq


def candidates(dq: Docqa, questions: list[Question], n: int) -> list[Candidates]:
    index = dq.indexes.current()
    out = []
    for q in questions:
        embedding = dq.embedder.embed_query(q.text)
        out.append(
            Candidates(
                embedding, index.vectors.query(embedding, n), index.lexical.search(q.text, n)
            )
        )
    return out


def evaluate_variant(
    dq: Docqa,
    qset: QuestionSet,
    cands: list[Candidates],
    overrides: dict[str, Any],
    answer: bool,
) -> dict[str, Any]:
    from retrieval.hybrid import HybridRetriever

    settings = dq.settings.retrieval.model_copy(update=overrides)
    index = dq.indexes.current()
    reranker = dq.retriever.reranker if settings.reranker else None
    retriever = HybridRetriever(dq.embedder, index.vectors, index.lexical, settings, reranker)
    service = dq.answering
    tally = Tally()
    for q, c in zip(qset.questions, cands, strict=True):
        t0 = time.perf_counter()
        retrieval = retriever.rank(q.text, c.embedding, c.dense, c.lexical, DEPTH)
        tally.ms.append((time.perf_counter() - t0) * 1000)
        if q.gold_source is not None:
            tally.add_ranking(judge_hits(retrieval.hits, q.gold_source, q.answers)[1])
        if answer:
            retrieval.hits = retrieval.hits[: settings.top_k]
            tally.add_answer(q, service.answer_from(q.text, retrieval))
    return tally.summary()


def evaluate_served(dq: Docqa, qset: QuestionSet) -> dict[str, Any]:
    """The whole service as configured: `/v1/search` for the ranking, `/v1/ask` for the
    answer."""
    tally = Tally()
    for q in qset.questions:
        t0 = time.perf_counter()
        retrieval = dq.retriever.retrieve(q.text, DEPTH)
        tally.ms.append((time.perf_counter() - t0) * 1000)
        if q.gold_source is not None:
            tally.add_ranking(judge_hits(retrieval.hits, q.gold_source, q.answers)[1])
        tally.add_answer(q, dq.answering.ask(q.text, use_cache=False))
    return tally.summary()


def print_table(rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    keys = [
        "hit@1",
        "hit@5",
        "mrr@10",
        "contains",
        "citation_precision",
        "wrongly_refused",
        "wrongly_answered",
        "rank_ms_p50",
    ]
    print(f"{'variant':<14}{'set':<14}" + "".join(f"{k[:12]:>13}" for k in keys))
    for variant, name, summary in rows:
        cells = "".join(f"{'' if summary.get(k) is None else summary[k]:>13}" for k in keys)
        print(f"{variant:<14}{name:<14}{cells}")


def main(argv: Sequence[str] | None = None, on_row: Callable[..., None] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=RESULTS / "quality")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated names from VARIANTS, or 'configured'",
    )
    ap.add_argument(
        "--answer",
        default="configured",
        help="comma-separated variants whose answers are measured too",
    )
    ap.add_argument("--served", action="store_true", help="measure the service as configured")
    ap.add_argument("--sets", default="", help="only these sets (comma-separated)")
    args = ap.parse_args(argv)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    sets = question_sets(args.data_dir)
    if args.sets:
        sets = [s for s in sets if s.name in args.sets.split(",")]
    overrides = {"answer": {"cache_ttl_s": 0}, "evals": {"record_traffic": "off"}}
    variants = {"configured": {}, **VARIANTS}
    chosen = [v for v in args.variants.split(",") if v]
    answered = set(args.answer.split(","))
    rows: list[tuple[str, str, dict[str, Any]]] = []
    docqas: dict[str, Docqa] = {}
    for qset in sets:
        if qset.index not in docqas:
            docqas[qset.index] = open_index(args.data_dir, qset.index, **overrides)
        dq = docqas[qset.index]
        dq.retriever.retrieve("warm-up", 1)
        if args.served:
            rows.append(("served", qset.name, evaluate_served(dq, qset)))
            continue
        n = dq.settings.retrieval.candidates
        cands = candidates(dq, qset.questions, n)
        for name in chosen:
            summary = evaluate_variant(dq, qset, cands, variants[name], name in answered)
            rows.append((name, qset.name, summary))
            if on_row:
                on_row(name, qset.name, summary)
    print_table(rows)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "served": args.served,
        "variants": {name: variants[name] for name in chosen},
        "results": [{"variant": v, "set": s, **m} for v, s, m in rows],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"quality-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    target.write_text(json.dumps(report, indent=2))
    print(f"written to {target}")
    return report


if __name__ == "__main__":
    main()
