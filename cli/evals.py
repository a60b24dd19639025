"""`docqa eval ...`: run a benchmark, list and compare runs, gate a run, check drift.

Exit status: 0 fine, 1 the gate failed (or drift is significant with --fail-on-drift),
2 bad input (a malformed benchmark, an unknown run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.console import ProgressBar, State, err, fail, out, run_guarded, services
from evals.results import EvalRun
from evals.store import EvalStore, open_store

eval_app = typer.Typer(
    help="Evaluate answer quality on a benchmark, gate regressions, watch drift.",
    no_args_is_help=True,
)


def _store() -> EvalStore:
    return open_store(State.settings())


@eval_app.command("run")
def run(
    benchmark: Annotated[
        Path | None,
        typer.Option(
            help="SQuAD-style JSON or JSONL benchmark (DOCQA_EVALS__BENCHMARK).",
            show_default=False,
        ),
    ] = None,
    documents: Annotated[
        Path | None,
        typer.Option(help="Documents folder of a JSONL benchmark.", show_default=False),
    ] = None,
    generator: Annotated[
        str | None,
        typer.Option(help="extractive or vllm (default: DOCQA_ANSWER__GENERATOR)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Report folder (default: <eval dir>/reports/<run id>)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Ask only the first N questions.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="A note stored with the run.")] = None,
    set_baseline: Annotated[
        bool, typer.Option("--set-baseline", help="Make this run its benchmark's baseline.")
    ] = False,
    retrieval_only: Annotated[
        bool, typer.Option("--retrieval-only", help="Measure retrieval, skip answering.")
    ] = False,
    gate_: Annotated[
        bool,
        typer.Option("--gate", help="Exit 1 when the run fails the gate against its baseline."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Run a benchmark through docqa (its own index, the /v1/ask code path), store the run
    and write its report."""
    from app import Docqa
    from evals.compare import gate_against_baseline
    from evals.runner import run_benchmark

    settings = State.settings()
    benchmark = benchmark or settings.evals.benchmark
    if benchmark is None:
        raise fail("give --benchmark FILE (or set DOCQA_EVALS__BENCHMARK)")
    if generator not in (None, "extractive", "vllm"):
        raise fail(f"--generator must be extractive or vllm, not {generator!r}")
    documents = documents or settings.evals.benchmark_documents

    with ProgressBar(None, disable=as_json or not err.is_terminal) as bar:
        outcome = run_guarded(
            lambda: run_benchmark(
                settings,
                benchmark,
                open_docqa=Docqa,
                documents=documents,
                generator=generator,
                out_dir=out_dir,
                limit=limit,
                label=label,
                answer_questions=not retrieval_only,
                set_baseline=set_baseline,
                progress=bar.stage,
            )
        )
    run_ = outcome.run
    gate_result = gate_against_baseline(_store(), run_, settings.evals, results=outcome.results)
    if as_json:
        body = _run_json(run_)
        body["ingested"] = outcome.ingested
        body["gate"] = gate_result.to_dict() if gate_result else None
        out.print_json(json.dumps(body, default=str))
    else:
        _print_run(run_, outcome.ingested)
        if gate_result is not None:
            _print_gate(gate_result)
        if outcome.report is not None:
            out.print(f"report: {outcome.report.html}", highlight=False)
            out.print(f"summary: {outcome.report.markdown}", highlight=False)
    if gate_ and gate_result is not None and not gate_result.passed:
        raise typer.Exit(1)


def _run_json(run_: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(run_)
    data["created_at"] = run_.created_at.isoformat()
    return data


def _print_run(run_: Any, ingested: dict[str, int] | None = None) -> None:
    from evals.report import format_value, summary_lines
    from evals.results import METRIC_BY_NAME

    out.print(
        f"[bold]run {run_.run_id}[/] · {run_.benchmark} · {run_.questions} questions · "
        f"{run_.generator} · {run_.duration_s:.0f} s",
        highlight=False,
    )
    if ingested:
        done = ", ".join(f"{v} {k}" for k, v in ingested.items() if v)
        out.print(f"benchmark index: {done or 'unchanged'}", highlight=False)
    for w in run_.warnings:
        out.print(f"[yellow]warning[/] {w}", highlight=False)
    table = Table("metric", "value")
    for name, value in run_.metrics.items():
        spec = METRIC_BY_NAME.get(name)
        table.add_row(spec.label if spec else name, format_value(name, value))
    out.print(table)
    for line in summary_lines(run_):
        out.print(line, highlight=False)


def _print_gate(result: Any) -> None:
    color = "green" if result.passed else "red"
    first, _, rest = result.summary().partition("\n")
    out.print(f"[bold {color}]{first}[/]", highlight=False)
    if rest:
        out.print(rest, highlight=False)
    if result.skipped:
        out.print(f"not gated (missing in a run): {', '.join(result.skipped)}", highlight=False)
    failing = result.comparison.newly_failing
    if failing:
        out.print(f"{len(failing)} questions newly fail:", highlight=False)
        for c in failing[:30]:
            out.print(f"  {c.qid} ({c.check}): {c.question}", highlight=False)
        if len(failing) > 30:
            out.print(f"  ... and {len(failing) - 30} more (--json lists all)", highlight=False)


@eval_app.command("list")
def list_runs(
    benchmark: Annotated[
        str | None, typer.Option(help="Only runs of this benchmark (its name).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stored runs, newest first."""
    runs = run_guarded(lambda: _store().list_runs(benchmark=benchmark, limit=limit))
    if as_json:
        out.print_json(json.dumps([_run_json(r) for r in runs], default=str))
        return
    table = Table()
    for name in ("run", "when (UTC)", "benchmark"):
        table.add_column(name, no_wrap=True)
    for name in ("q", "gen", "hit@5", "MRR", "F1", "ground.", ""):
        table.add_column(name)
    for r in runs:
        m = r.metrics

        def f(name: str, m: dict[str, float] = m) -> str:
            return f"{m[name]:.3f}" if name in m else "–"

        table.add_row(
            r.run_id,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            r.benchmark,
            str(r.questions),
            r.generator,
            f("hit@5"),
            f("mrr@10"),
            f("f1"),
            f("groundedness"),
            "baseline" if r.is_baseline else (r.label or ""),
        )
    out.print(table)
    if not runs:
        out.print("no runs yet: `docqa eval run --benchmark FILE`", highlight=False)


@eval_app.command("compare")
def compare(
    baseline: Annotated[str, typer.Argument(help="Run id (or unique prefix, or 'latest').")],
    candidate: Annotated[str, typer.Argument(help="Run id to hold against it.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Two runs' metrics side by side on their shared questions, and what changed."""
    from evals.compare import compare_runs
    from evals.report import format_delta, format_value

    def build() -> Any:
        store = _store()
        a, b = store.get_run(baseline), store.get_run(candidate)
        return compare_runs(a, store.results(a.run_id), b, store.results(b.run_id))

    comparison = run_guarded(build)
    if as_json:
        out.print_json(json.dumps(comparison.to_dict(), default=str))
        return
    table = Table(
        "metric",
        comparison.baseline.run_id,
        comparison.candidate.run_id,
        "change",
        title=f"{comparison.shared_questions} shared questions",
    )
    for m in comparison.metrics:
        style = ""
        if m.drop is not None and abs(m.drop) >= 0.0005:
            style = "red" if m.drop > 0 else "green"
        table.add_row(
            m.label,
            format_value(m.name, m.baseline),
            format_value(m.name, m.candidate),
            f"[{style}]{format_delta(m.name, m.delta)}[/]"
            if style
            else format_delta(m.name, m.delta),
        )
    out.print(table)
    for note in comparison.notes:
        out.print(f"note: {note}", highlight=False)
    out.print(
        f"{len(comparison.newly_failing)} questions newly fail, "
        f"{len(comparison.newly_passing)} newly pass",
        highlight=False,
    )
    for c in comparison.newly_failing[:20]:
        out.print(f"  - {c.qid} ({c.check}): {c.question}", highlight=False)


@eval_app.command("gate")
def gate_cmd(
    baseline: Annotated[
        str | None,
        typer.Option(help="Baseline run (default: the pinned baseline of the run's benchmark)."),
    ] = None,
    run_ref: Annotated[str, typer.Option("--run", help="The run to check.")] = "latest",
    max_drop: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Largest accepted drop (DOCQA_EVALS__MAX_DROP)."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="A metric to gate (repeat; default DOCQA_EVALS__GATE_METRICS)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Exit 1 when a gated metric dropped by more than --max-drop against the baseline;
    lists the questions that newly fail."""
    from evals.compare import gate_against_baseline, unknown_metrics

    settings = State.settings()
    metrics = metric or settings.evals.gate_metrics
    unknown = unknown_metrics(metrics)
    if unknown:
        raise fail(f"unknown metric(s) {', '.join(unknown)}; see `docqa eval list --json`")

    def build() -> Any:
        store = _store()
        candidate = store.get_run(run_ref)
        base = store.get_run(baseline) if baseline else store.baseline_for(candidate)
        if base is None:
            raise fail(
                f"run {candidate.run_id} has no baseline: give --baseline RUN, or pin one with "
                "`docqa eval baseline RUN`"
            )
        if base.run_id == candidate.run_id:
            raise fail("the run and its baseline are the same run; give --run or --baseline")
        return gate_against_baseline(
            store, candidate, settings.evals, baseline=base, max_drop=max_drop, metrics=metrics
        )

    result = run_guarded(build)
    if as_json:
        out.print_json(json.dumps(result.to_dict(), default=str))
    else:
        _print_gate(result)
    raise typer.Exit(0 if result.passed else 1)


@eval_app.command("baseline")
def baseline_cmd(
    run_ref: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")],
) -> None:
    """Pin a run as the baseline its benchmark's later runs are gated against."""
    run_ = run_guarded(lambda: _store().set_baseline(run_ref))
    out.print(f"{run_.run_id} is now the baseline of {run_.benchmark}", highlight=False)


@eval_app.command("report")
def report_cmd(
    run_ref: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")] = "latest",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Report folder.")] = None,
) -> None:
    """Write (again) a stored run's HTML report and Markdown summary."""
    from evals.report import write_run_report
    from evals.store import eval_dir

    settings = State.settings()

    def build() -> Any:
        store = _store()
        run_ = store.get_run(run_ref)
        target = out_dir or (Path(run_.report_dir) if run_.report_dir else None)
        target = target or eval_dir(settings) / "reports" / run_.run_id
        files = write_run_report(store, run_, target, settings=settings)
        store.update_run(run_.run_id, report_dir=str(target.resolve()))
        return files

    files = run_guarded(build)
    out.print(f"report: {files.html}\nsummary: {files.markdown}", highlight=False)


@eval_app.command("drift")
def drift_cmd(
    run_ref: Annotated[
        str | None,
        typer.Option("--run", help="Benchmark run to compare with (default: latest baseline)."),
    ] = None,
    days: Annotated[
        float | None,
        typer.Option(min=0.01, help="Window of live questions (DOCQA_EVALS__DRIFT_WINDOW_DAYS)."),
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when drift is significant.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Have the questions people ask drifted from the benchmark? Embedding shift (centroid
    distance, MMD test), retrieval-score shift (KS test) and the 'not found' rate."""
    from evals.drift import drift_against_run

    docqa = services()

    def build() -> Any:
        store = docqa.eval_store
        if run_ref:
            reference: EvalRun | None = store.get_run(run_ref)
        else:
            runs = store.list_runs(limit=200)
            reference = next((r for r in runs if r.is_baseline), runs[0] if runs else None)
        if reference is None:
            raise fail("no benchmark runs yet: run `docqa eval run --benchmark FILE`")
        return drift_against_run(
            docqa.settings, store, reference, embedder=docqa.embedder, days=days
        )

    report = run_guarded(build)
    if as_json:
        body = report.to_dict()
        body.pop("live_nearest", None)
        out.print_json(json.dumps(body, default=str))
    else:
        color = "red" if report.significant else "green"
        out.print(f"[{color}]{report.verdict}[/]", highlight=False)
        out.print(
            f"reference: run {report.reference_run} ({report.reference_questions} questions); "
            f"window {report.since} to {report.until}",
            highlight=False,
        )
        for note in report.notes:
            out.print(f"note: {note}", highlight=False)
    raise typer.Exit(1 if fail_on_drift and report.significant else 0)


@eval_app.command("export-feedback")
def export_feedback_cmd(
    out_path: Annotated[
        Path, typer.Option("--out", help="The benchmark file to write (JSONL).")
    ] = Path("feedback.jsonl"),
    review: Annotated[
        Path | None,
        typer.Option(
            help="Where the questions a person must answer go (default: <out>.review.jsonl).",
            show_default=False,
        ),
    ] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            help="Copy the cited documents into this folder, for `docqa eval run --documents`.",
            show_default=False,
        ),
    ] = None,
    days: Annotated[
        float | None,
        typer.Option(min=0.01, help="Only ratings of the last N days.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Turn rated answers into a benchmark the eval suite runs: each up-voted answer's
    question, with the texts it cited as gold answers and the document it cited first.
    Down-voted answers (and up-voted ones that cited nothing) go to a review file for a
    person to answer. Exit 1 when there is no up-voted answer to make a benchmark of."""
    from datetime import UTC, datetime, timedelta

    from evals.feedback import build_export, copy_documents, write_jsonl

    docqa = services()
    review = review or out_path.with_name(f"{out_path.stem}.review.jsonl")
    since = datetime.now(UTC) - timedelta(days=days) if days else None

    def locate(document_id: str) -> Path | None:
        record = docqa.records.get(document_id)
        if record is None:
            return None
        for candidate in (record.stored_path, record.source):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        return None

    def build() -> Any:
        export = build_export(docqa.eval_store.feedback(since=since))
        write_jsonl(review, export.review)
        missing: list[str] = []
        if export.benchmark:
            write_jsonl(out_path, export.benchmark)
            if documents is not None:
                missing = copy_documents(export, documents, locate)
        return export, missing

    export, missing = run_guarded(build)
    downs = sum(1 for r in export.review if r["rating"] == "down")
    counts = {
        "benchmark": len(export.benchmark),
        "review": len(export.review),
        "down_voted": downs,
        "superseded": export.superseded,
        "documents": len(export.documents),
        "documents_missing": missing,
        "benchmark_path": str(out_path) if export.benchmark else None,
        "review_path": str(review),
    }
    if as_json:
        out.print_json(json.dumps(counts))
    else:
        out.print(
            f"{len(export.benchmark)} questions to {out_path if export.benchmark else '(none)'} "
            "(gold answers: what the up-voted answers cited); "
            f"{len(export.review)} to review in {review} ({downs} down-voted)"
            + (f"; {export.superseded} older ratings superseded" if export.superseded else ""),
            highlight=False,
        )
        if documents is not None and export.benchmark:
            out.print(
                f"{len(export.documents) - len(missing)} cited documents copied to {documents}",
                highlight=False,
            )
        for name in missing:
            out.print(f"[yellow]warning[/] the file of {name} was not found", highlight=False)
        if export.benchmark:
            folder = documents or "DOCUMENTS_FOLDER"
            out.print(
                f"run it: docqa eval run --benchmark {out_path} --documents {folder}",
                highlight=False,
            )
    if not export.benchmark:
        raise fail("no up-voted answer that cites a document yet: no benchmark written", code=1)
