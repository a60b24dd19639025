"""Two runs side by side, and the gate that fails a run which got worse than its baseline.

Runs are compared on the questions they share (by question id), so a run over a slice of
the benchmark is held against the baseline's numbers on that same slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evals.results import METRIC_BY_NAME, METRICS, EvalRun, QuestionResult, summarize

if TYPE_CHECKING:
    from docqa.settings import EvalSettings
    from evals.store import EvalStore


@dataclass
class MetricDelta:
    name: str
    label: str
    baseline: float | None
    candidate: float | None
    higher_is_better: bool

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return round(self.candidate - self.baseline, 4)

    @property
    def drop(self) -> float | None:
        """How much worse the candidate is (positive = worse), whichever way is better."""
        if self.delta is None:
            return None
        return round(-self.delta if self.higher_is_better else self.delta, 4)


@dataclass
class QuestionChange:
    qid: str
    question: str
    # "retrieval" (the gold passage left or entered the top 5), "answer" (the answer lost or
    # gained the gold text), or both: "retrieval, answer".
    check: str
    baseline_answer: str
    candidate_answer: str
    answers: list[str]


@dataclass
class Comparison:
    baseline: EvalRun
    candidate: EvalRun
    shared_questions: int
    metrics: list[MetricDelta]
    newly_failing: list[QuestionChange] = field(default_factory=list)
    newly_passing: list[QuestionChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def metric(self, name: str) -> MetricDelta | None:
        return next((m for m in self.metrics if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline.run_id,
            "candidate": self.candidate.run_id,
            "shared_questions": self.shared_questions,
            "metrics": [
                {
                    "name": m.name,
                    "baseline": m.baseline,
                    "candidate": m.candidate,
                    "delta": m.delta,
                    "higher_is_better": m.higher_is_better,
                }
                for m in self.metrics
            ],
            "newly_failing": [vars(q) for q in self.newly_failing],
            "newly_passing": [vars(q) for q in self.newly_passing],
            "notes": self.notes,
        }


@dataclass
class GateResult:
    comparison: Comparison
    max_drop: float
    gated: list[str]
    failures: list[MetricDelta] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        c = self.comparison
        head = "PASS" if self.passed else "FAIL"
        text = (
            f"gate {head}: run {c.candidate.run_id} against baseline {c.baseline.run_id} on "
            f"{c.shared_questions} shared questions (max drop {self.max_drop:g})"
        )
        for m in self.failures:
            text += f"\n  {m.name} dropped by {m.drop:.4f}: {m.baseline:.4f} -> {m.candidate:.4f}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "max_drop": self.max_drop,
            "gated": self.gated,
            "failures": [m.name for m in self.failures],
            "skipped": self.skipped,
            "comparison": self.comparison.to_dict(),
        }


def compare_runs(
    baseline: EvalRun,
    baseline_results: Sequence[QuestionResult],
    candidate: EvalRun,
    candidate_results: Sequence[QuestionResult],
) -> Comparison:
    """Metrics of both runs over their shared questions, and the questions that changed."""
    base_by_id = {r.qid: r for r in baseline_results}
    cand_by_id = {r.qid: r for r in candidate_results}
    shared = [q for q in cand_by_id if q in base_by_id]
    notes = []
    if baseline.benchmark_sha256 != candidate.benchmark_sha256:
        notes.append("the runs used different benchmark files; compared on shared question ids")
    if len(shared) < max(len(base_by_id), len(cand_by_id)):
        notes.append(
            f"{len(shared)} shared questions (baseline {len(base_by_id)}, "
            f"candidate {len(cand_by_id)})"
        )
    base_metrics = summarize([base_by_id[q] for q in shared])
    cand_metrics = summarize([cand_by_id[q] for q in shared])
    metrics = [
        MetricDelta(
            name=m.name,
            label=m.label,
            baseline=base_metrics.get(m.name),
            candidate=cand_metrics.get(m.name),
            higher_is_better=m.higher_is_better,
        )
        for m in METRICS
        if m.name in base_metrics or m.name in cand_metrics
    ]
    comparison = Comparison(baseline, candidate, len(shared), metrics, notes=notes)
    for qid in shared:
        before, after = base_by_id[qid], cand_by_id[qid]
        lost: list[str] = []
        gained: list[str] = []
        for check, was, now in (
            ("retrieval", before.retrieval_pass, after.retrieval_pass),
            ("answer", before.answer_pass, after.answer_pass),
        ):
            if check == "answer" and not (before.answered and after.answered):
                continue
            if was != now:
                (lost if was else gained).append(check)
        for checks, into in ((lost, comparison.newly_failing), (gained, comparison.newly_passing)):
            if checks:
                into.append(
                    QuestionChange(
                        qid,
                        after.question,
                        ", ".join(checks),
                        before.answer,
                        after.answer,
                        after.answers,
                    )
                )
    return comparison


def gate(comparison: Comparison, *, max_drop: float, metrics: Sequence[str]) -> GateResult:
    """Fail when any gated metric is worse than the baseline by more than `max_drop`
    (absolute). A metric one of the runs does not have is skipped, not failed."""
    result = GateResult(comparison, max_drop, list(metrics))
    for name in metrics:
        m = comparison.metric(name)
        if m is None or m.drop is None:
            result.skipped.append(name)
        elif m.drop > max_drop + 1e-9:
            result.failures.append(m)
    return result


def compare_with_baseline(
    store: EvalStore,
    run: EvalRun,
    *,
    results: Sequence[QuestionResult] | None = None,
    baseline: EvalRun | None = None,
) -> Comparison | None:
    """The run held against `baseline`, or its benchmark's baseline (pinned, else the
    previous run); None when there is none. `results`: the run's, when already in hand."""
    baseline = baseline or store.baseline_for(run)
    if baseline is None:
        return None
    if results is None:
        results = store.results(run.run_id)
    return compare_runs(baseline, store.results(baseline.run_id), run, results)


def gate_against_baseline(
    store: EvalStore,
    run: EvalRun,
    settings: EvalSettings,
    *,
    results: Sequence[QuestionResult] | None = None,
    baseline: EvalRun | None = None,
    max_drop: float | None = None,
    metrics: Sequence[str] | None = None,
) -> GateResult | None:
    """The gate of a run against its baseline, with DOCQA_EVALS__MAX_DROP and
    DOCQA_EVALS__GATE_METRICS unless given; None when there is no baseline to gate against
    (the first run of a benchmark)."""
    comparison = compare_with_baseline(store, run, results=results, baseline=baseline)
    if comparison is None:
        return None
    return gate(
        comparison,
        max_drop=settings.max_drop if max_drop is None else max_drop,
        metrics=settings.gate_metrics if metrics is None else metrics,
    )


def unknown_metrics(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in METRIC_BY_NAME]
