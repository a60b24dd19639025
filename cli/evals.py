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

eval_app = typer.Typer(
    help="Evaluate answer quality on a benchmark, gate regressions, watch drift.",
    no_args_is_help=True,
)


def _cli() -> Any:
    from docqa import cli

    return cli


def _settings() -> Any:
    return _cli().State.settings()


def _store() -> Any:
    from evals.runner import open_store

    return open_store(_settings())


def _guarded(fn: Any) -> Any:
    return _cli().run_guarded(fn)


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
    out: Annotated[
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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from evals.runner import run_benchmark

    cli = _cli()
    settings = _settings()
    benchmark = benchmark or settings.evals.benchmark
    if benchmark is None:
        raise cli.fail("give --benchmark FILE (or set DOCQA_EVALS__BENCHMARK)")
    if generator not in (None, "extractive", "vllm"):
        raise cli.fail(f"--generator must be extractive or vllm, not {generator!r}")
    documents = documents or settings.evals.benchmark_documents

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=cli.err,
        transient=True,
        disable=as_json or not cli.err.is_terminal,
    ) as progress:
        tasks: dict[str, Any] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        outcome = _guarded(
            lambda: run_benchmark(
                settings,
                benchmark,
                documents=documents,
                generator=generator,
                out_dir=out,
                limit=limit,
                label=label,
                answer_questions=not retrieval_only,
                set_baseline=set_baseline,
                progress=advance,
            )
        )
    run_ = outcome.run
    gate_result = _gate_against_baseline(run_, outcome.results)
    if as_json:
        body = _run_json(run_)
        body["ingested"] = outcome.ingested
        body["gate"] = gate_result.to_dict() if gate_result else None
        cli.out.print_json(json.dumps(body, default=str))
    else:
        _print_run(run_, outcome.ingested)
        if gate_result is not None:
            _print_gate(gate_result)
        if outcome.report is not None:
            cli.out.print(f"report: {outcome.report.html}", highlight=False)
            cli.out.print(f"summary: {outcome.report.markdown}", highlight=False)
    if gate_ and gate_result is not None and not gate_result.passed:
        raise typer.Exit(1)


def _gate_against_baseline(run_: Any, results: Any) -> Any:
    from evals.compare import compare_runs, gate

    settings = _settings()
    store = _store()
    baseline = store.baseline_for(run_)
    if baseline is None:
        return None
    comparison = compare_runs(baseline, store.results(baseline.run_id), run_, results)
    return gate(comparison, max_drop=settings.evals.max_drop, metrics=settings.evals.gate_metrics)


def _run_json(run_: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(run_)
    data["created_at"] = run_.created_at.isoformat()
    return data


def _print_run(run_: Any, ingested: dict[str, int] | None = None) -> None:
    from evals.report import format_value, summary_lines
    from evals.results import METRIC_BY_NAME

    out = _cli().out
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
    out = _cli().out
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
    runs = _guarded(lambda: _store().list_runs(benchmark=benchmark, limit=limit))
    out = _cli().out
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

    comparison = _guarded(build)
    out = _cli().out
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
    from evals.compare import compare_runs, gate, unknown_metrics

    cli = _cli()
    settings = _settings()
    metrics = metric or settings.evals.gate_metrics
    unknown = unknown_metrics(metrics)
    if unknown:
        raise cli.fail(f"unknown metric(s) {', '.join(unknown)}; see `docqa eval list --json`")

    def build() -> Any:
        store = _store()
        candidate = store.get_run(run_ref)
        base = store.get_run(baseline) if baseline else store.baseline_for(candidate)
        if base is None:
            raise cli.fail(
                f"run {candidate.run_id} has no baseline: give --baseline RUN, or pin one with "
                "`docqa eval baseline RUN`"
            )
        if base.run_id == candidate.run_id:
            raise cli.fail("the run and its baseline are the same run; give --run or --baseline")
        comparison = compare_runs(
            base, store.results(base.run_id), candidate, store.results(candidate.run_id)
        )
        return gate(
            comparison,
            max_drop=settings.evals.max_drop if max_drop is None else max_drop,
            metrics=metrics,
        )

    result = _guarded(build)
    if as_json:
        cli.out.print_json(json.dumps(result.to_dict(), default=str))
    else:
        _print_gate(result)
    raise typer.Exit(0 if result.passed else 1)


@eval_app.command("baseline")
def baseline_cmd(
    run_ref: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")],
) -> None:
    """Pin a run as the baseline its benchmark's later runs are gated against."""
    run_ = _guarded(lambda: _store().set_baseline(run_ref))
    _cli().out.print(f"{run_.run_id} is now the baseline of {run_.benchmark}", highlight=False)


@eval_app.command("report")
def report_cmd(
    run_ref: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")] = "latest",
    out: Annotated[Path | None, typer.Option("--out", help="Report folder.")] = None,
) -> None:
    """Write (again) a stored run's HTML report and Markdown summary."""
    from evals.report import write_run_report
    from evals.runner import eval_dir

    settings = _settings()

    def build() -> Any:
        store = _store()
        run_ = store.get_run(run_ref)
        target = out or (Path(run_.report_dir) if run_.report_dir else None)
        target = target or eval_dir(settings) / "reports" / run_.run_id
        files = write_run_report(store, run_, target, settings=settings)
        store.update_run(run_.run_id, report_dir=str(target.resolve()))
        return files

    files = _guarded(build)
    _cli().out.print(f"report: {files.html}\nsummary: {files.markdown}", highlight=False)


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

    cli = _cli()
    settings = _settings()

    def build() -> Any:
        store = _store()
        if run_ref:
            reference = store.get_run(run_ref)
        else:
            runs = store.list_runs(limit=200)
            reference = next((r for r in runs if r.is_baseline), runs[0] if runs else None)
            if reference is None:
                raise cli.fail("no benchmark runs yet: run `docqa eval run --benchmark FILE`")
        return drift_against_run(settings, store, reference, days=days)

    report = _guarded(build)
    if as_json:
        body = report.to_dict()
        body.pop("live_nearest", None)
        cli.out.print_json(json.dumps(body, default=str))
    else:
        color = "red" if report.significant else "green"
        cli.out.print(f"[{color}]{report.verdict}[/]", highlight=False)
        cli.out.print(
            f"reference: run {report.reference_run} ({report.reference_questions} questions); "
            f"window {report.since} to {report.until}",
            highlight=False,
        )
        for note in report.notes:
            cli.out.print(f"note: {note}", highlight=False)
    raise typer.Exit(1 if fail_on_drift and report.significant else 0)
