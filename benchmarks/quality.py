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
import os
import time
import zlib
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
SHARED = Path(os.environ.get("DOCQA_SHARED_DIR", ROOT.parent / "shared"))
SETS = ROOT / "benchmarks" / "sets"
RESULTS = ROOT / "benchmarks" / "results"
DEPTH = 10

# Retrieval settings per variant (over the configured ones). "before" is docqa as tuned
# on COVID-QA alone.
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {
        "fusion": "weighted",
        "rrf_k": 20,
        "dense_weight": 1.0,
        "lexical_weight": 1.5,
        "answer": {"not_found": "cosine", "min_relevance": 0.34},
    },
    "dense": {"fusion": "weighted", "dense_weight": 1.0, "lexical_weight": 0.0},
    "bm25": {"fusion": "weighted", "dense_weight": 0.0, "lexical_weight": 1.0},
    "rrf60": {"fusion": "rrf", "rrf_k": 60},
    "score.6": {"fusion": "score", "score_alpha": 0.6, "sentence_weight": 0.0},
    "score.6+sent": {"fusion": "score", "score_alpha": 0.6, "sentence_weight": 1.3},
    "adaptive-sent": {"fusion": "adaptive", "sentence_weight": 0.0},
    "adaptive": {"fusion": "adaptive", "sentence_weight": 1.3},
    "adaptive+evidence": {
        "fusion": "adaptive",
        "sentence_weight": 1.3,
        "answer": {"not_found": "evidence"},
    },
    # Late interaction over the configured fusion's best 10 (or 20) candidates.
    **{f"late{w}": {"late_interaction_weight": float(w)} for w in (0, 3, 5, 7)},
    "late5x20": {"late_interaction_weight": 5.0, "late_interaction_candidates": 20},
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

    overrides = dict(overrides)
    answer_overrides = overrides.pop("answer", {})
    settings = dq.settings.retrieval.model_copy(update=overrides)
    index = dq.indexes.current()
    reranker = dq.retriever.reranker if settings.reranker else None
    retriever = HybridRetriever(
        dq.embedder, index.vectors, index.lexical, settings, reranker, index.sentences
    )
    service = dq.answering
    service.settings = dq.settings.answer.model_copy(update=answer_overrides)
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


def rerank_cost(dq: Docqa, questions: list[Question], candidates: int = 20) -> dict[str, Any]:
    """Milliseconds a cross-encoder of the size of cross-encoder/ms-marco-MiniLM-L-6-v2
    (6 layers, 384 wide) adds per question on this machine, scoring `candidates` real
    passages. Built locally with random weights: no model is downloaded, and the cost of
    a forward pass does not depend on the weights."""
    import tempfile

    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from ingestion.embed import resolve_model
    from retrieval.rerank import CrossEncoderReranker

    folder = Path(tempfile.mkdtemp(prefix="docqa-rerank-cost-"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(dq.settings.embedding.model)[0])
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    reranker = CrossEncoderReranker(folder)
    retriever = dq.retriever
    reranker.score("warm-up", ["warm-up"])
    times = []
    for q in questions:
        hits = retriever.retrieve(q.text, candidates).hits
        t0 = time.perf_counter()
        reranker.score(q.text, [h.chunk.text for h in hits])
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "model": "MiniLM-L6 cross-encoder shape (random weights)",
        "candidates": candidates,
        "questions": len(times),
        "ms_p50": round(float(np.percentile(times, 50)), 1),
        "ms_p95": round(float(np.percentile(times, 95)), 1),
    }


FEATURES = ("nearest", "coverage", "sentence", "agreement")


def held_out(qid: str) -> bool:
    """Half of every set, fixed by the question id: the not-found rule is fitted on the
    other half and its rates are reported on this one."""
    return zlib.crc32(qid.encode()) % 2 == 1


def signals_of(
    dq: Docqa, qset: QuestionSet, cands: list[Candidates], overrides: dict[str, Any]
) -> list[tuple[Question, list[float]]]:
    from retrieval.hybrid import HybridRetriever

    overrides = {k: v for k, v in overrides.items() if k != "answer"}
    settings = dq.settings.retrieval.model_copy(update=overrides)
    index = dq.indexes.current()
    retriever = HybridRetriever(
        dq.embedder, index.vectors, index.lexical, settings, sentences=index.sentences
    )
    out = []
    for q, c in zip(qset.questions, cands, strict=True):
        r = retriever.rank(q.text, c.embedding, c.dense, c.lexical, settings.top_k)
        out.append((q, [r.nearest, *(r.signals.get(f, 0.0) for f in FEATURES[1:])]))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, steps: int = 4000) -> np.ndarray:
    """Weighted logistic regression by gradient descent (a handful of features)."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        w -= 0.5 * xb.T @ ((p - y) * weight) / weight.sum()
    return w


def calibrate(
    rows: list[tuple[str, Question, list[float]]],
    max_refused: float,
    features: Sequence[str] = FEATURES,
) -> dict[str, Any]:
    """Fit the evidence weights and threshold on the tuning half (each set weighing the same,
    answerable and unanswerable questions weighing the same), report both halves."""
    x = np.array([f for _, _, f in rows])
    y = np.array([q.gold_source is not None for _, q, _ in rows], dtype=float)
    tune = np.array([not held_out(q.qid) for _, q, _ in rows])
    names = [n for n, _, _ in rows]
    weight = np.ones(len(rows))
    for cls in (0.0, 1.0):
        for name in set(names):
            mask = (y == cls) & np.array([n == name for n in names])
            if mask.any():
                weight[mask] = 1.0 / mask.sum()
    w = fit_logistic(x[tune], y[tune], weight[tune])
    score = 1 / (1 + np.exp(-(np.hstack([np.ones((len(x), 1)), x]) @ w)))
    # The highest threshold that keeps wrongly refused answerable questions under the cap.
    positives = np.sort(score[tune & (y == 1)])
    threshold = float(positives[int(np.floor(max_refused * len(positives)))])

    def rates(mask: np.ndarray, s: np.ndarray, t: float) -> dict[str, float]:
        pos, neg = mask & (y == 1), mask & (y == 0)
        return {
            "wrongly_refused": round(float((s[pos] < t).mean()), 3) if pos.any() else None,
            "wrongly_answered": round(float((s[neg] >= t).mean()), 3) if neg.any() else None,
        }

    cosine = x[:, 0]
    out: dict[str, Any] = {
        "weights": dict(zip(("bias", *features), (round(float(v), 3) for v in w), strict=True)),
        "threshold": round(threshold, 4),
        "tuning": rates(tune, score, threshold),
        "held_out": rates(~tune, score, threshold),
        "cosine_0.34_held_out": rates(~tune, cosine, 0.34),
        "per_set_held_out": {},
    }
    for name in sorted(set(names)):
        mask = ~tune & np.array([n == name for n in names])
        out["per_set_held_out"][name] = {
            "evidence": rates(mask, score, threshold),
            "cosine_0.34": rates(mask, cosine, 0.34),
        }
    return out


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
        default=",".join(["configured", *VARIANTS]),
        help="comma-separated names from VARIANTS, or 'configured' (the settings as set)",
    )
    ap.add_argument(
        "--answer",
        default="before,configured",
        help="comma-separated variants whose answers are measured too ('none': none)",
    )
    ap.add_argument("--served", action="store_true", help="measure the service as configured")
    ap.add_argument("--sets", default="", help="only these sets (comma-separated)")
    ap.add_argument(
        "--calibrate",
        default="",
        help="fit the not-found evidence weights on this variant's signals",
    )
    ap.add_argument("--max-refused", type=float, default=0.04)
    ap.add_argument(
        "--features",
        default="nearest,sentence",
        help="signals the calibration fits (of " + ",".join(FEATURES) + ")",
    )
    ap.add_argument(
        "--rerank-cost",
        type=int,
        default=0,
        metavar="N",
        help="also time a MiniLM-sized cross-encoder on N COVID-QA questions",
    )
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
    signal_rows: list[tuple[str, Question, list[float]]] = []
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
        if args.calibrate:
            for q, features in signals_of(dq, qset, cands, variants[args.calibrate]):
                signal_rows.append((qset.name, q, features))
        for name in chosen:
            summary = evaluate_variant(dq, qset, cands, variants[name], name in answered)
            rows.append((name, qset.name, summary))
            if on_row:
                on_row(name, qset.name, summary)
    print_table(rows)
    cost = None
    if args.rerank_cost and "covidqa" in docqas:
        covid = next(s for s in sets if s.index == "covidqa")
        cost = rerank_cost(docqas["covidqa"], covid.questions[: args.rerank_cost])
        print("reranker cost per question:", json.dumps(cost))
    chosen_features = [FEATURES.index(f) for f in args.features.split(",")]
    calibration = (
        calibrate(
            [(n, q, [f[i] for i in chosen_features]) for n, q, f in signal_rows],
            args.max_refused,
            [FEATURES[i] for i in chosen_features],
        )
        if signal_rows
        else None
    )
    if calibration:
        print(json.dumps(calibration, indent=2))
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "served": args.served,
        "variants": {name: variants[name] for name in chosen},
        "results": [{"variant": v, "set": s, **m} for v, s, m in rows],
        "calibration": calibration,
        "rerank_cost": cost,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"quality-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    target.write_text(json.dumps(report, indent=2))
    print(f"written to {target}")
    return report


if __name__ == "__main__":
    main()
