"""The report of a run: one self-contained HTML page (plots inlined as PNG) and a Markdown
summary with its plots beside it, written to the run's report folder.

What a reader should see first: did this run pass the gate against its baseline, which
numbers moved, which questions newly fail, and whether live questions drifted.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.compare import Comparison, GateResult, compare_runs, gate
from evals.results import (
    ANSWER_METRICS,
    HEADLINE,
    METRIC_BY_NAME,
    METRICS,
    RETRIEVAL_METRICS,
    EvalRun,
    QuestionResult,
)

if TYPE_CHECKING:
    from docqa.settings import Settings
    from evals.store import EvalStore

TREND_METRICS = ("hit@5", "mrr@10", "f1", "answer_contains", "groundedness", "not_found_rate")
TREND_RUNS = 30
MAX_LISTED = 40
LATENCY_METRICS = tuple(
    f"{stage}_ms_p{p}" for stage in ("retrieve", "generate", "total") for p in (50, 95)
)


@dataclass
class ReportFiles:
    folder: Path
    html: Path
    markdown: Path
    plots: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Context:
    run: EvalRun
    results: list[QuestionResult]
    baseline: EvalRun | None
    comparison: Comparison | None
    gate: GateResult | None
    history: list[EvalRun]
    live_nearest: list[float]
    min_relevance: float | None
    drift: dict[str, Any] | None


def write_run_report(
    store: EvalStore,
    run: EvalRun,
    folder: Path,
    *,
    settings: Settings | None = None,
    results: list[QuestionResult] | None = None,
) -> ReportFiles:
    """Render the run's report into `folder` (report.html, report.md, plots/*.png).

    :param results: the run's question results when the caller has them (else read back).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)

    ctx = _context(store, run, settings, results)
    folder.mkdir(parents=True, exist_ok=True)
    plots_dir = folder / "plots"
    plots_dir.mkdir(exist_ok=True)
    pngs: dict[str, bytes] = {}
    for name, draw in (
        ("trends", _plot_trends),
        ("baseline", _plot_against_baseline),
        ("latency", _plot_latency),
        ("scores", _plot_scores),
    ):
        png = draw(ctx)
        if png is not None:
            pngs[name] = png
    files = ReportFiles(folder, folder / "report.html", folder / "report.md")
    for name, png in pngs.items():
        path = plots_dir / f"{name}.png"
        path.write_bytes(png)
        files.plots[name] = path
    files.html.write_text(_html(ctx, pngs), encoding="utf-8")
    files.markdown.write_text(_markdown(ctx, pngs), encoding="utf-8")
    return files


def _context(
    store: EvalStore,
    run: EvalRun,
    settings: Settings | None,
    results: list[QuestionResult] | None,
) -> _Context:
    results = results if results is not None else store.results(run.run_id)
    baseline = store.baseline_for(run)
    comparison = gate_result = None
    if baseline is not None:
        comparison = compare_runs(baseline, store.results(baseline.run_id), run, results)
        if settings is not None:
            gate_result = gate(
                comparison, max_drop=settings.evals.max_drop, metrics=settings.evals.gate_metrics
            )
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
    return _Context(
        run, results, baseline, comparison, gate_result, history, live, min_relevance, run.drift
    )


# -- plots ---------------------------------------------------------------------------------

_BLUE, _ORANGE, _GREY, _RED = "#2563eb", "#ea580c", "#9ca3af", "#dc2626"


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plot_trends(ctx: _Context) -> bytes | None:
    import matplotlib.pyplot as plt

    runs = ctx.history
    names = [m for m in TREND_METRICS if any(m in r.metrics for r in runs)]
    if len(runs) < 2 or not names:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.6))
    xs = list(range(len(runs)))
    for name in names:
        ys = [r.metrics.get(name, float("nan")) for r in runs]  # a gap where it is missing
        ax.plot(xs, ys, marker="o", label=METRIC_BY_NAME[name].label)
    for i, r in enumerate(runs):
        if r.is_baseline:
            ax.axvline(i, color=_GREY, linestyle=":", linewidth=1)
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [r.created_at.strftime("%m-%d %H:%M") for r in runs], rotation=35, ha="right", fontsize=8
    )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("score")
    ax.set_title(
        f"Metrics over the last {len(runs)} runs of {ctx.run.benchmark} (dotted: baseline)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)


def _plot_against_baseline(ctx: _Context) -> bytes | None:
    import matplotlib.pyplot as plt
    import numpy as np

    names = [m for m in HEADLINE if m in ctx.run.metrics]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.2))
    y = np.arange(len(names))
    this = [ctx.run.metrics.get(n, 0.0) for n in names]
    if ctx.comparison is not None:
        # On the shared questions, so a slice is held against the same slice.
        base = [ctx.comparison.metric(n) for n in names]
        base_vals = [b.baseline if b and b.baseline is not None else 0.0 for b in base]
        this = [b.candidate if b and b.candidate is not None else 0.0 for b in base]
        ax.barh(y + 0.2, base_vals, height=0.38, color=_GREY, label="baseline")
        ax.barh(y - 0.2, this, height=0.38, color=_BLUE, label="this run")
        title = f"This run against baseline {ctx.comparison.baseline.run_id}"
    else:
        ax.barh(y, this, height=0.5, color=_BLUE, label="this run")
        title = "This run (no baseline yet)"
    for yi, v in zip(y, this, strict=True):
        ax.text(v + 0.01, yi - (0.2 if ctx.comparison else 0), f"{v:.3f}", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([METRIC_BY_NAME[n].label for n in names], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _plot_latency(ctx: _Context) -> bytes | None:
    import matplotlib.pyplot as plt
    import numpy as np

    stages = [
        (s, [r.timings_ms[s] for r in ctx.results if s in r.timings_ms])
        for s in ("retrieve", "generate", "total")
    ]
    stages = [(s, v) for s, v in stages if v]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(9, 2.8), squeeze=False)
    for ax, (stage, values) in zip(axes[0], stages, strict=True):
        # A few slow outliers would squash the rest into one bar: cut the axis at p99.
        top = float(np.percentile(values, 99)) or 1.0
        beyond = sum(v > top for v in values)
        ax.hist([min(v, top) for v in values], bins=30, range=(0, top), color=_BLUE, alpha=0.8)
        xlabel = "ms"
        if beyond:
            xlabel += f" ({beyond} slower ones drawn at the right edge)"
        for p, style in ((50, "-"), (95, "--")):
            v = float(np.percentile(values, p))
            ax.axvline(v, color=_ORANGE, linestyle=style, linewidth=1.2, label=f"p{p} {v:.0f} ms")
        ax.set_title(stage, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Latency per question, by stage", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def _plot_scores(ctx: _Context) -> bytes | None:
    import matplotlib.pyplot as plt
    import numpy as np

    bench = [r.nearest for r in ctx.results]
    if not bench:
        return None
    fig, ax = plt.subplots(figsize=(9, 3))
    bins = np.linspace(min([*bench, *ctx.live_nearest, 0.0]), 1.0, 40).tolist()
    ax.hist(
        bench, bins=bins, density=True, alpha=0.6, color=_BLUE, label=f"benchmark ({len(bench)})"
    )
    if ctx.live_nearest:
        ax.hist(
            ctx.live_nearest,
            bins=bins,
            density=True,
            alpha=0.55,
            color=_ORANGE,
            label=f"live ({len(ctx.live_nearest)})",
        )
    if ctx.min_relevance is not None:
        ax.axvline(ctx.min_relevance, color=_RED, linestyle="--", linewidth=1.2)
        ax.text(
            ctx.min_relevance,
            ax.get_ylim()[1] * 0.92,
            " 'not found' below",
            color=_RED,
            fontsize=8,
        )
    title = "Nearest-passage similarity of each question"
    if not ctx.live_nearest:
        title += " (no live questions recorded yet)"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("cosine similarity of the question to its nearest chunk", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


# -- text ----------------------------------------------------------------------------------


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


def _metric_rows(ctx: _Context) -> list[tuple[str, str, str, str, str, str]]:
    """(name, label, this run, baseline, delta, state) with state good|bad|fail|''."""
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
            (name, label, shown, format_value(name, base), format_delta(name, delta), state)
        )
    return rows


def _headline(ctx: _Context) -> tuple[str, str]:
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


def _failing_examples(results: list[QuestionResult]) -> list[QuestionResult]:
    """Questions whose gold passage was not retrieved in the top 5 or whose answer misses
    the gold text, worst first."""
    failing = [r for r in results if not r.retrieval_pass or (r.answered and not r.contains)]
    failing.sort(key=lambda r: (r.retrieval_pass, r.f1))
    return failing


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


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111827;
max-width:1060px;margin:24px auto;padding:0 20px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;
border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.meta{color:#6b7280;font-size:13px}.meta code{font-size:12px}
.banner{padding:12px 16px;border-radius:8px;margin:16px 0;font-weight:600}
.banner.pass{background:#dcfce7;color:#14532d}.banner.fail{background:#fee2e2;color:#7f1d1d}
.banner.none{background:#f3f4f6;color:#374151}
.drift{padding:10px 14px;border-radius:8px;margin:8px 0;background:#f3f4f6}
.drift.sig{background:#ffedd5;color:#7c2d12}.drift ul{margin:4px 0 0;padding-left:20px}
table{border-collapse:collapse;font-size:14px;margin:8px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.good td.delta{color:#15803d}tr.bad td.delta{color:#b45309}
tr.fail td{background:#fee2e2}tr.fail td.delta{color:#b91c1c;font-weight:700}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:24px}
img{max-width:100%;height:auto;display:block;margin:8px 0}
.q{max-width:420px}.a{max-width:420px;color:#374151;font-size:13px}
.warn{color:#92400e}ul.summary li{margin:2px 0}
details pre{background:#f9fafb;padding:10px;font-size:12px;overflow:auto;max-height:480px}
small{color:#6b7280}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _img(pngs: dict[str, bytes], name: str, alt: str) -> str:
    if name not in pngs:
        return ""
    data = base64.b64encode(pngs[name]).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _metrics_table_html(ctx: _Context, names: tuple[str, ...] | None, title: str) -> str:
    rows = [row for row in _metric_rows(ctx) if names is None or row[0] in names]
    if not rows:
        return ""
    has_base = ctx.comparison is not None
    head = "<tr><th>metric</th><th>this run</th>" + (
        "<th>baseline</th><th>change</th>" if has_base else ""
    )
    body = []
    for _name, label, value, base, delta, state in rows:
        cells = f"<td>{_e(label)}</td><td class=num>{value}</td>"
        if has_base:
            cells += f"<td class=num>{base}</td><td class='num delta'>{delta}</td>"
        body.append(f"<tr class='{state}'>{cells}</tr>")
    return f"<div><h3>{_e(title)}</h3><table>{head}</tr>{''.join(body)}</table></div>"


def _questions_table_html(changes: list[Any], title: str, note: str) -> str:
    if not changes:
        return ""
    rows = []
    for c in changes[:MAX_LISTED]:
        rows.append(
            f"<tr><td>{_e(c.qid)}</td><td>{_e(c.check)}</td><td class=q>{_e(c.question)}</td>"
            f"<td class=a>{_e(c.answers[0][:200] if c.answers else '')}</td>"
            f"<td class=a>{_e(c.candidate_answer[:300])}</td></tr>"
        )
    more = (
        f"<p><small>{len(changes) - MAX_LISTED} more not shown.</small></p>"
        if len(changes) > MAX_LISTED
        else ""
    )
    return (
        f"<h2>{_e(title)} ({len(changes)})</h2><p><small>{_e(note)}</small></p><table>"
        "<tr><th>id</th><th>check</th><th>question</th><th>gold answer</th>"
        f"<th>answer now</th></tr>{''.join(rows)}</table>{more}"
    )


def _drift_html(drift: dict[str, Any] | None) -> str:
    if not drift:
        return (
            "<div class=drift>No live questions were recorded in the drift window, so there "
            "is nothing to compare yet (see <code>docqa eval drift</code>).</div>"
        )
    from evals.drift import DriftReport

    report = DriftReport.from_dict(drift)
    cls = "drift sig" if report.significant else "drift"
    findings = report.findings()
    if not findings:
        return f"<div class='{cls}'>{_e(report.verdict)}</div>"
    items = "".join(f"<li>{_e(f)}</li>" for f in findings)
    window = (
        f" (last {report.window_days:g} days against this run's questions, α = {report.alpha:g})"
        if report.window_days
        else ""
    )
    return f"<div class='{cls}'><b>{_e(report.headline)}</b>{_e(window)}<ul>{items}</ul></div>"


def _html(ctx: _Context, pngs: dict[str, bytes]) -> str:
    r = ctx.run
    state, sentence = _headline(ctx)
    meta = (
        f"run <code>{_e(r.run_id)}</code> · {r.created_at:%Y-%m-%d %H:%M} UTC · "
        f"commit <code>{_e((r.git_commit or 'unknown')[:19])}</code> · index "
        f"<code>{_e(r.index_version or '')}</code> · benchmark sha256 "
        f"<code>{_e(r.benchmark_sha256[:12])}</code>"
    )
    if r.label:
        meta += f" · label <b>{_e(r.label)}</b>"
    if r.is_baseline:
        meta += " · <b>this run is the baseline</b>"
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>docqa eval · {_e(r.benchmark)} · {_e(r.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>docqa evaluation: {_e(r.benchmark)}</h1><div class=meta>{meta}</div>",
        f"<div class='banner {state}'>{_e(sentence)}</div>",
        "<ul class=summary>"
        + "".join(f"<li>{_e(s)}</li>" for s in summary_lines(ctx.run))
        + "</ul>",
    ]
    if ctx.comparison and ctx.comparison.notes:
        parts.append("<p><small>" + _e("; ".join(ctx.comparison.notes)) + "</small></p>")
    for w in r.warnings:
        parts.append(f"<p class=warn>⚠ {_e(w)}</p>")
    parts.append("<h2>Metrics</h2>")
    if ctx.gate:
        parts.append(
            "<p><small>⚑ gated metric: the gate fails when it is worse than the baseline by "
            f"more than {ctx.gate.max_drop:g}. Changes are on the questions both runs share."
            "</small></p>"
        )
    parts.append("<div class=cols>")
    parts.append(
        _metrics_table_html(ctx, (*RETRIEVAL_METRICS, "doc_recall@1", "doc_recall@5"), "Retrieval")
    )
    parts.append(_metrics_table_html(ctx, ANSWER_METRICS, "Answers"))
    parts.append("</div>")
    parts.append(
        _metrics_table_html(
            ctx,
            (*LATENCY_METRICS, "prompt_tokens_mean", "completion_tokens_mean"),
            "Latency and tokens",
        )
    )
    parts.append(_img(pngs, "baseline", "this run against the baseline"))
    parts.append("<h2>Trend</h2>")
    if "trends" in pngs:
        parts.append(_img(pngs, "trends", "metrics over the stored runs"))
    else:
        parts.append(
            "<p><small>The trend over stored runs appears from the second run.</small></p>"
        )
    parts.append("<h2>Latency</h2>" + _img(pngs, "latency", "latency histograms"))
    parts.append("<h2>Live questions and drift</h2>" + _drift_html(ctx.drift))
    parts.append(_img(pngs, "scores", "nearest-passage similarity, live vs benchmark"))
    if ctx.comparison is not None:
        parts.append(
            _questions_table_html(
                ctx.comparison.newly_failing,
                "Questions that newly fail",
                f"Passed in baseline {ctx.comparison.baseline.run_id}, fail now. retrieval: "
                "the gold passage left the top 5; answer: the answer no longer contains the "
                "gold text.",
            )
        )
        parts.append(
            _questions_table_html(
                ctx.comparison.newly_passing,
                "Questions that newly pass",
                "Failed in the baseline, pass now.",
            )
        )
    failing = _failing_examples(ctx.results)
    if failing:
        rows = "".join(
            f"<tr><td>{_e(q.qid)}</td><td class=q>{_e(q.question)}</td>"
            f"<td class=num>{q.hit_rank or '–'}</td>"
            f"<td class=a>{_e(q.answers[0][:200])}</td><td class=a>{_e(q.answer[:300])}</td></tr>"
            for q in failing[:MAX_LISTED]
        )
        parts.append(
            f"<h2>Failing questions ({len(failing)} of {len(ctx.results)})</h2>"
            "<p><small>Gold passage not in the top 5, or the answer misses the gold text; "
            f"retrieval misses first. {min(len(failing), MAX_LISTED)} shown.</small></p>"
            "<table><tr><th>id</th><th>question</th><th>gold rank</th><th>gold answer</th>"
            f"<th>answer</th></tr>{rows}</table>"
        )
    config = json.dumps(r.config, indent=2, sort_keys=True, default=str)
    parts.append(
        "<h2>Configuration</h2><details><summary>models, chunking, retrieval and answer "
        f"settings of this run</summary><pre>{_e(config)}</pre></details>"
    )
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def _markdown(ctx: _Context, pngs: dict[str, bytes]) -> str:
    r = ctx.run
    _, sentence = _headline(ctx)
    lines = [
        f"# docqa evaluation: {r.benchmark}",
        "",
        f"Run `{r.run_id}` · {r.created_at:%Y-%m-%d %H:%M} UTC · commit "
        f"`{(r.git_commit or 'unknown')[:19]}` · index `{r.index_version or ''}`",
        "",
        f"**{sentence}**",
        "",
        *[f"- {s}" for s in summary_lines(ctx.run)],
        "",
    ]
    for w in r.warnings:
        lines.append(f"> ⚠ {w}")
    has_base = ctx.comparison is not None
    lines += [
        "| metric | this run |" + (" baseline | change |" if has_base else ""),
        "|---|---:|" + ("---:|---:|" if has_base else ""),
    ]
    for _name, label, value, base, delta, state in _metric_rows(ctx):
        mark = " ❌" if state == "fail" else ""
        row = f"| {label} | {value} |"
        if has_base:
            row += f" {base} | {delta}{mark} |"
        lines.append(row)
    lines.append("")
    drift = ctx.drift.get("verdict") if ctx.drift else "no live questions recorded in the window"
    lines += [f"**Drift:** {drift}", ""]
    for name, alt in (
        ("baseline", "this run against the baseline"),
        ("trends", "metrics over the stored runs"),
        ("latency", "latency per stage"),
        ("scores", "nearest-passage similarity, live vs benchmark"),
    ):
        if name in pngs:
            lines += [f"![{alt}](plots/{name}.png)", ""]
    if ctx.comparison is not None and ctx.comparison.newly_failing:
        changes = ctx.comparison.newly_failing
        lines += [f"## Questions that newly fail ({len(changes)})", ""]
        for c in changes[:MAX_LISTED]:
            lines.append(f"- `{c.qid}` ({c.check}): {c.question}")
        lines.append("")
    lines.append("The full report with every table is report.html beside this file.")
    return "\n".join(lines) + "\n"
