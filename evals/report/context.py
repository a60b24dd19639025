"""What a run's report shows, gathered once: the run and its results, the baseline it is held
against, the gate's verdict, the runs before it, live similarities and drift; and the
numbers and sentences the HTML page, the Markdown summary and the CLI print from it.

Nothing here draws or renders: the plots (plots.py) and the templates (templates/) only
read a ReportContext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from evals.compare import Comparison, GateResult, compare_with_baseline, gate
from evals.feedback import RatingDay, ratings_by_day
from evals.results import METRIC_BY_NAME, METRICS, EvalRun, QuestionResult

if TYPE_CHECKING:
    from docqa.settings import Settings
    from evals.store import EvalStore

TREND_METRICS = ("hit@5", "mrr@10", "f1", "answer_contains", "groundedness", "not_found_rate")
TREND_RUNS = 30
MAX_LISTED = 40
# Ratings of answers are shown over this many days (or the traffic retention, when shorter).
FEEDBACK_DAYS = 90
LATENCY_METRICS = tuple(
    f"{stage}_ms_p{p}" for stage in ("retrieve", "generate", "total") for p in (50, 95)
)


@dataclass
class ReportContext:
    run: EvalRun
    results: list[QuestionResult]
    baseline: EvalRun | None
    comparison: Comparison | None
    gate: GateResult | None
    history: list[EvalRun]
    live_nearest: list[float]
    min_relevance: float | None
    drift: dict[str, Any] | None
    # Thumbs up and down per day that had ratings, oldest first, up to the report's day.
    feedback: list[RatingDay] = field(default_factory=list)
    feedback_days: int = FEEDBACK_DAYS


def build_context(
    store: EvalStore,
    run: EvalRun,
    settings: Settings | None,
    results: list[QuestionResult] | None,
) -> ReportContext:
    results = results if results is not None else store.results(run.run_id)
    comparison = compare_with_baseline(store, run, results=results)
    gate_result = None
    if comparison is not None and settings is not None:
        gate_result = gate(
            comparison, max_drop=settings.evals.max_drop, metrics=settings.evals.gate_metrics
        )
    baseline = comparison.baseline if comparison is not None else None
    history = [
        r
        for r in store.list_runs(benchmark_sha256=run.benchmark_sha256, limit=TREND_RUNS * 2)
        if r.created_at <= run.created_at
    ][:TREND_RUNS]
    history.reverse()
    live: list[float] = []
    if run.drift and run.drift.get("live_nearest"):
        live = list(run.drift["live_nearest"])
    elif settings is not None:
        since = datetime.now(UTC) - timedelta(days=settings.evals.drift_window_days)
        live = [t.nearest for t in store.traffic(since=since) if t.nearest is not None]
    min_relevance = settings.answer.min_relevance if settings is not None else None
    if min_relevance is None:
        min_relevance = (run.config.get("answer") or {}).get("min_relevance")
    days = min(FEEDBACK_DAYS, settings.evals.traffic_retention_days) if settings else FEEDBACK_DAYS
    now = datetime.now(UTC)
    feedback = ratings_by_day(store.ratings(since=now - timedelta(days=days)))
    return ReportContext(
        run,
        results,
        baseline,
        comparison,
        gate_result,
        history,
        live,
        min_relevance,
        run.drift,
        feedback,
        days,
    )


def format_value(name: str, value: float | None) -> str:
    if value is None:
        return "–"
    spec = METRIC_BY_NAME.get(name)
    if spec is not None and spec.kind in ("latency", "usage"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


def format_delta(name: str, delta: float | None) -> str:
    if delta is None:
        return ""
    if abs(delta) < 0.0005:
        return "±0"
    spec = METRIC_BY_NAME.get(name)
    if spec is not None and spec.kind in ("latency", "usage"):
        return f"{delta:+,.0f}"
    return f"{delta:+.3f}"


class MetricRow(NamedTuple):
    """One metric as the tables show it, values already formatted."""

    name: str
    label: str  # with " ⚑" when the gate checks it
    value: str
    baseline: str
    delta: str
    state: str  # good | bad | fail | ''


def metric_rows(ctx: ReportContext) -> list[MetricRow]:
    """Every metric of the run, in METRICS order and then any docqa does not know."""
    rows = []
    failed = {m.name for m in ctx.gate.failures} if ctx.gate else set()
    gated = set(ctx.gate.gated) if ctx.gate else set()
    ordered = [m.name for m in METRICS if m.name in ctx.run.metrics]
    ordered += [n for n in ctx.run.metrics if n not in METRIC_BY_NAME]
    for name in ordered:
        value = ctx.run.metrics[name]
        spec = METRIC_BY_NAME.get(name)
        label = spec.label if spec else name
        base = delta = None
        state = ""
        if ctx.comparison is not None and (m := ctx.comparison.metric(name)) is not None:
            base, delta = m.baseline, m.delta
            if m.drop is not None and abs(m.drop) >= 0.0005:
                state = "bad" if m.drop > 0 else "good"
        if name in failed:
            state = "fail"
        shown = format_value(name, value)
        if name in gated:
            label += " ⚑"
        rows.append(
            MetricRow(
                name, label, shown, format_value(name, base), format_delta(name, delta), state
            )
        )
    return rows


def headline(ctx: ReportContext) -> tuple[str, str]:
    """(state, sentence): the gate's verdict, or why there is none."""
    if ctx.gate is None:
        if ctx.baseline is None:
            return "none", "First run of this benchmark: it has no baseline to be gated against."
        return "none", f"Compared with {ctx.baseline.run_id}; no gate settings were given."
    g = ctx.gate
    if g.passed:
        return "pass", (
            f"Gate passed: no gated metric dropped by more than {g.max_drop:g} against "
            f"baseline {ctx.baseline.run_id if ctx.baseline else ''}."
        )
    worst = ", ".join(
        f"{m.label} {m.baseline:.3f} → {m.candidate:.3f}"
        for m in g.failures
        if m.baseline is not None and m.candidate is not None
    )
    return "fail", f"Gate failed (max drop {g.max_drop:g}): {worst}."


def failing_examples(results: list[QuestionResult]) -> list[QuestionResult]:
    """Questions whose gold passage was not retrieved in the top 5 or whose answer misses
    the gold text, worst first."""
    failing = [r for r in results if not r.retrieval_pass or (r.answered and not r.contains)]
    failing.sort(key=lambda r: (r.retrieval_pass, r.f1))
    return failing


@dataclass
class DriftSummary:
    """The stored drift snapshot as the page states it."""

    significant: bool
    headline: str
    findings: list[str]  # one sentence per signal; empty when there was no verdict
    verdict: str
    window: str  # " (last 7 days against …)", or "" when the window is not known


def drift_summary(drift: dict[str, Any] | None) -> DriftSummary | None:
    """None when no live questions were recorded in the drift window."""
    if not drift:
        return None
    from evals.drift import DriftReport

    report = DriftReport.from_dict(drift)
    window = (
        f" (last {report.window_days:g} days against this run's questions, α = {report.alpha:g})"
        if report.window_days
        else ""
    )
    return DriftSummary(
        report.significant, report.headline, report.findings(), report.verdict, window
    )


def summary_lines(run: EvalRun) -> list[str]:
    """The run's headline numbers in plain sentences."""
    r = run
    m = r.metrics
    lines = [
        f"{r.questions} questions, {r.generator} answerer, {r.duration_s:.0f} s in all.",
    ]
    if "hit@5" in m:
        lines.append(
            f"Retrieval: the gold passage is in the top 5 for {m['hit@5']:.1%} of questions "
            f"(top 1: {m.get('hit@1', 0):.1%}), MRR@10 {m.get('mrr@10', 0):.3f}."
        )
    if "f1" in m:
        lines.append(
            f"Answers: {m.get('answer_contains', 0):.1%} contain the gold answer, token F1 "
            f"{m['f1']:.3f}, exact match {m.get('exact_match', 0):.3f}, "
            f"'not found' for {m.get('not_found_rate', 0):.1%}."
        )
    if "groundedness" in m:
        lines.append(
            f"Grounding: {m['groundedness']:.1%} of answer sentences are supported by the "
            f"passages they cite; {m.get('citation_precision', 0):.1%} of citations point at "
            "the gold document."
        )
    if "total_ms_p50" in m:
        lines.append(
            f"Latency per question: p50 {m['total_ms_p50']:.0f} ms, p95 "
            f"{m.get('total_ms_p95', 0):.0f} ms."
        )
    return lines


def feedback_summary(days: list[RatingDay], window: int) -> str | None:
    """The thumbs-down rate in a sentence, over the window and its last week; None when
    nothing was rated."""
    up, down = sum(d.up for d in days), sum(d.down for d in days)
    if not up + down:
        return None
    sentence = (
        f"{up + down} answers rated in the last {window} days: {down / (up + down):.0%} "
        f"thumbs down ({down} down, {up} up)"
    )
    week_start = datetime.now(UTC).date() - timedelta(days=6)
    recent = [d for d in days if d.day >= week_start]
    r_up, r_down = sum(d.up for d in recent), sum(d.down for d in recent)
    if recent and len(recent) < len(days):
        sentence += f"; last 7 days: {r_down / (r_up + r_down):.0%} of {r_up + r_down}"
    return sentence + "."
