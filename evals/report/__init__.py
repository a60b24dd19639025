"""The report of a run: one self-contained HTML page (plots inlined as PNG) and a Markdown
summary with its plots beside it, written to the run's report folder.

What a reader should see first: did this run pass the gate against its baseline, which
numbers moved, which questions newly fail, and whether live questions drifted.

context.py gathers what the report shows, plots.py draws it, and the Jinja2 templates under
templates/ lay it out; this module writes the files.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from evals.report.context import (
    LATENCY_METRICS,
    MAX_LISTED,
    ReportContext,
    build_context,
    drift_summary,
    failing_examples,
    feedback_summary,
    format_delta,
    format_value,
    headline,
    metric_rows,
    summary_lines,
)
from evals.report.plots import draw_plots
from evals.results import ANSWER_METRICS, RETRIEVAL_METRICS, EvalRun, QuestionResult

if TYPE_CHECKING:
    from docqa.settings import Settings
    from evals.store import EvalStore

__all__ = [
    "ReportContext",
    "ReportFiles",
    "format_delta",
    "format_value",
    "summary_lines",
    "write_run_report",
]

# The metrics of each table on the page, by the table's place in the template.
_TABLES = {
    "retrieval": (*RETRIEVAL_METRICS, "doc_recall@1", "doc_recall@5"),
    "answers": ANSWER_METRICS,
    "latency": (*LATENCY_METRICS, "prompt_tokens_mean", "completion_tokens_mean"),
}


@dataclass
class ReportFiles:
    folder: Path
    html: Path
    markdown: Path
    plots: dict[str, Path] = field(default_factory=dict)


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
    ctx = build_context(store, run, settings, results)
    pngs = draw_plots(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    plots_dir = folder / "plots"
    plots_dir.mkdir(exist_ok=True)
    files = ReportFiles(folder, folder / "report.html", folder / "report.md")
    for name, png in pngs.items():
        path = plots_dir / f"{name}.png"
        path.write_bytes(png)
        files.plots[name] = path
    variables = _variables(ctx, pngs)
    env = _environment()
    files.html.write_text(env.get_template("report.html.j2").render(variables), encoding="utf-8")
    files.markdown.write_text(env.get_template("report.md.j2").render(variables), encoding="utf-8")
    return files


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("evals.report", "templates"),
        # The page is escaped by Jinja2, never by hand. Not by a bare "j2" extension: that
        # would escape the Markdown summary too, which is plain text for Markdown readers.
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2"),
            disabled_extensions=("md", "md.j2"),
            default=True,
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,  # a misspelt name fails the render, not a blank cell
    )


def _data_uri(png: bytes) -> Markup:
    # Safe to mark: docqa's own base64 of its own PNG, [A-Za-z0-9+/=] only.
    return Markup("data:image/png;base64," + base64.b64encode(png).decode("ascii"))


def _variables(ctx: ReportContext, pngs: dict[str, bytes]) -> dict[str, Any]:
    """What both templates read: the context, and what is worked out from it once."""
    state, sentence = headline(ctx)
    return {
        "ctx": ctx,
        "run": ctx.run,
        "state": state,
        "sentence": sentence,
        "summary": summary_lines(ctx.run),
        "rows": metric_rows(ctx),
        "has_base": ctx.comparison is not None,
        "tables": _TABLES,
        "images": {name: _data_uri(png) for name, png in pngs.items()},
        "drift": drift_summary(ctx.drift),
        "feedback": feedback_summary(ctx.feedback, ctx.feedback_days),
        "failing": failing_examples(ctx.results),
        "max_listed": MAX_LISTED,
        "config_json": json.dumps(ctx.run.config, indent=2, sort_keys=True, default=str),
    }
