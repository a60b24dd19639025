"""The report's four plots, each drawn from the ReportContext into PNG bytes, or None when
the run has nothing to show for it (a first run has no trend).

matplotlib is imported inside the functions: importing evals.report (the CLI does, for
format_value) should not pay for it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from evals.report.context import TREND_METRICS, ReportContext
from evals.results import HEADLINE, METRIC_BY_NAME

_BLUE, _ORANGE, _GREY, _RED = "#2563eb", "#ea580c", "#9ca3af", "#dc2626"


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_trends(ctx: ReportContext) -> bytes | None:
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


def plot_against_baseline(ctx: ReportContext) -> bytes | None:
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


def plot_latency(ctx: ReportContext) -> bytes | None:
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


def plot_scores(ctx: ReportContext) -> bytes | None:
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


def plot_feedback(ctx: ReportContext) -> bytes | None:
    """Ratings per day (bars) and the thumbs-down rate (line): do people find the answers
    worse, beside what drift says about the questions."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    days = ctx.feedback
    if not days:
        return None
    xs: Any = [d.day for d in days]  # matplotlib takes dates; its stubs say numbers
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.bar(xs, [d.up for d in days], color=_GREY, label="thumbs up", width=0.8)
    ax.bar(
        xs,
        [d.down for d in days],
        bottom=[d.up for d in days],
        color=_ORANGE,
        label="thumbs down",
        width=0.8,
    )
    ax.set_ylabel("ratings", fontsize=8)
    rate = ax.twinx()
    rate.plot(
        xs,
        [d.down_rate * 100 for d in days],
        color=_RED,
        marker="o",
        linewidth=1.5,
        label="thumbs-down rate",
    )
    rate.set_ylim(0, 105)
    rate.set_ylabel("thumbs down, %", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    ax.tick_params(labelsize=8)
    rate.tick_params(labelsize=8)
    fig.autofmt_xdate()
    ax.set_title(f"Ratings of answers per day, last {ctx.feedback_days} days", fontsize=10)
    handles = ax.get_legend_handles_labels()
    more = rate.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


# The plots by the name of their file under plots/, in the order they are drawn.
PLOTS: tuple[tuple[str, Callable[[ReportContext], bytes | None]], ...] = (
    ("trends", plot_trends),
    ("baseline", plot_against_baseline),
    ("latency", plot_latency),
    ("scores", plot_scores),
    ("feedback", plot_feedback),
)


def draw_plots(ctx: ReportContext) -> dict[str, bytes]:
    """Every plot the run has something to show for, by name."""
    import matplotlib

    matplotlib.use("Agg", force=True)

    pngs: dict[str, bytes] = {}
    for name, draw in PLOTS:
        png = draw(ctx)
        if png is not None:
            pngs[name] = png
    return pngs
