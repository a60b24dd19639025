"""What one benchmark run measured: a result per question, and the metrics over them.

Metrics are always computed from the per-question results, so two runs can be compared on
exactly the questions they share (`summarize(results)` on any subset).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np

RETRIEVAL_DEPTH = 10
HIT_KS = (1, 5, 10)
# A question passes retrieval when a chunk of its gold document holding the answer is
# among the passages /v1/ask answers from (top 5 by default).
PASS_RANK = 5


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool = True
    kind: str = "quality"  # quality | latency | usage


METRICS: tuple[Metric, ...] = (
    Metric("hit@1", "hit@1"),
    Metric("hit@5", "hit@5"),
    Metric("hit@10", "hit@10"),
    Metric("mrr@10", "MRR@10"),
    Metric("ndcg@10", "nDCG@10"),
    Metric("doc_recall@1", "gold-document recall@1"),
    Metric("doc_recall@5", "gold-document recall@5"),
    Metric("doc_recall@10", "gold-document recall@10"),
    Metric("exact_match", "exact match"),
    Metric("f1", "token F1"),
    Metric("answer_contains", "answer contains gold"),
    Metric("groundedness", "supported sentences"),
    Metric("citation_precision", "citation precision"),
    Metric("not_found_rate", "'not found' answers", higher_is_better=False),
    Metric("wrongly_refused", "answerable questions refused", higher_is_better=False),
    Metric("wrongly_answered", "unanswerable questions answered", higher_is_better=False),
    *(
        Metric(f"{stage}_ms_p{p}", f"{stage} p{p} (ms)", higher_is_better=False, kind="latency")
        for stage in ("retrieve", "generate", "total")
        for p in (50, 95)
    ),
    Metric("prompt_tokens_mean", "prompt tokens / question", False, "usage"),
    Metric("completion_tokens_mean", "completion tokens / question", False, "usage"),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}
RETRIEVAL_METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "doc_recall@10")
ANSWER_METRICS = (
    "exact_match",
    "f1",
    "answer_contains",
    "groundedness",
    "citation_precision",
    "not_found_rate",
)
HEADLINE = RETRIEVAL_METRICS + ANSWER_METRICS


@dataclass
class QuestionResult:
    """Everything measured for one question. Ranks are 1-based within the top 10."""

    qid: str
    question: str
    answers: list[str]
    document: str | None = None
    hit_rank: int | None = None  # first chunk of the gold document holding the answer
    doc_rank: int | None = None  # first chunk of the gold document
    ndcg: float = 0.0
    nearest: float = 0.0  # cosine similarity of the nearest chunk: what "not found" uses
    top_scores: list[float] = field(default_factory=list)
    answered: bool = False  # False in a retrieval-only run
    answer: str = ""
    found: bool = False
    exact_match: float = 0.0
    f1: float = 0.0
    contains: bool = False
    sentences: int = 0
    supported_sentences: int = 0
    citations: int = 0
    correct_citations: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    error: str | None = None
    unanswerable: bool = False  # the documents do not answer it: found means wrongly answered

    @property
    def retrieval_pass(self) -> bool:
        # Nothing is there to find for an unanswerable question: retrieval cannot fail it.
        return self.unanswerable or (self.hit_rank is not None and self.hit_rank <= PASS_RANK)

    @property
    def answer_pass(self) -> bool:
        return not self.found if self.unanswerable else self.contains

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuestionResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class EvalRun:
    """A stored run: its metrics and the whole configuration that produced them."""

    run_id: str
    created_at: datetime
    benchmark: str
    benchmark_path: str
    benchmark_sha256: str
    generator: str
    questions: int
    metrics: dict[str, float]
    config: dict[str, Any]
    git_commit: str | None = None
    index_version: str | None = None
    duration_s: float = 0.0
    report_dir: str | None = None
    is_baseline: bool = False
    label: str | None = None
    warnings: list[str] = field(default_factory=list)
    drift: dict[str, Any] | None = None


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def _percentile(values: Sequence[float], p: float) -> float | None:
    return round(float(np.percentile(values, p)), 1) if values else None


def summarize(results: Sequence[QuestionResult]) -> dict[str, float]:
    """The run's metrics; metrics that do not apply (answers in a retrieval-only run, tokens
    without a model) are left out rather than reported as zero."""
    out: dict[str, float | None] = {}
    if not results:
        return {}
    unanswerable = [r for r in results if r.unanswerable and r.answered]
    if unanswerable:
        out["wrongly_answered"] = _mean(r.found for r in unanswerable)
    results = [r for r in results if not r.unanswerable]
    if not results:
        return {k: round(v, 4) for k, v in out.items() if v is not None}
    with_gold = [r for r in results if r.document]
    for k in HIT_KS:
        out[f"hit@{k}"] = _mean(r.hit_rank is not None and r.hit_rank <= k for r in results)
        out[f"doc_recall@{k}"] = _mean(
            r.doc_rank is not None and r.doc_rank <= k for r in with_gold
        )
    out["mrr@10"] = _mean(1.0 / r.hit_rank if r.hit_rank else 0.0 for r in results)
    out["ndcg@10"] = _mean(r.ndcg for r in results)
    answered = [r for r in results if r.answered]
    if answered:
        out["exact_match"] = _mean(r.exact_match for r in answered)
        out["f1"] = _mean(r.f1 for r in answered)
        out["answer_contains"] = _mean(r.contains for r in answered)
        out["not_found_rate"] = _mean(not r.found for r in answered)
        if unanswerable:
            out["wrongly_refused"] = out["not_found_rate"]
        sentences = sum(r.sentences for r in answered)
        if sentences:
            out["groundedness"] = sum(r.supported_sentences for r in answered) / sentences
        citations = sum(r.citations for r in answered)
        if citations:
            out["citation_precision"] = sum(r.correct_citations for r in answered) / citations
        for stage in ("retrieve", "generate", "total"):
            values = [r.timings_ms[stage] for r in answered if stage in r.timings_ms]
            for p in (50, 95):
                out[f"{stage}_ms_p{p}"] = _percentile(values, p)
        used = [r.usage for r in answered if r.usage]
        if used:
            for key in ("prompt_tokens", "completion_tokens"):
                out[f"{key}_mean"] = _mean(u.get(key, 0) for u in used)
    return {k: round(v, 4) for k, v in out.items() if v is not None}
