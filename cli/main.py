"""The `docqa` command. Settings come from DOCQA_* variables; the global flags override them.

Each command is a few lines over the stage functions, through the parts of one `Docqa`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.console import (
    ProgressBar,
    State,
    err,
    fail,
    out,
    print_failures,
    run_guarded,
    services,
)
from cli.evals import eval_app
from cli.keys import keys_app
from docqa.domain import IngestOutcome, IngestResult, check_collection_name
from docqa.errors import DocqaError
from docqa.settings import load_settings

app = typer.Typer(
    help="docqa: ask questions of your own documents and get answers with citations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
documents_app = typer.Typer(help="List and remove indexed documents.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")
app.add_typer(eval_app, name="eval")
app.add_typer(keys_app, name="keys")


@app.callback()
def main(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (DOCQA_DATA_DIR).", show_default=False)
    ] = None,
    chroma_url: Annotated[
        str | None, typer.Option(help="Chroma server URL (DOCQA_CHROMA_URL).", show_default=False)
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Record store URL (DOCQA_DATABASE_URL).", show_default=False),
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option(
            help="The collection (tenant) to ingest into, ask, search or list; default: `default`.",
            show_default=False,
        ),
    ] = None,
) -> None:
    if collection is not None:
        try:
            check_collection_name(collection)
        except ValueError as exc:
            raise fail(str(exc)) from None
    State.collection = collection
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if chroma_url is not None:
        overrides["chroma_url"] = chroma_url
    if database_url is not None:
        overrides["database_url"] = database_url
    State.overrides = overrides
    State._settings = None


# -- ingest ------------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    force: Annotated[bool, typer.Option(help="Re-index even unchanged files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Index files and folders. Exit status 0 if every file indexed, 1 if some failed."""
    from docqa.locking import writer_lock
    from ingestion.pipeline import iter_files

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise fail("no such file or folder: " + ", ".join(str(p) for p in missing))
    files = list(iter_files(paths))
    if not files:
        raise fail("no files found under " + ", ".join(str(p) for p in paths), code=1)

    def run() -> list[IngestResult]:
        docqa = services()
        with writer_lock(docqa.settings, holder="docqa ingest"):
            indexer = docqa.indexer()
            indexer.repair()
            with ProgressBar(
                "indexing", total=len(files), disable=as_json or not err.is_terminal
            ) as bar:
                return indexer.ingest_paths(
                    files, force=force, on_result=lambda r: bar.advance(r.source)
                )

    results = run_guarded(run)
    if as_json:
        from api.schemas import DocumentResult

        out.print_json(json.dumps([DocumentResult.of(r).model_dump() for r in results]))
    else:
        print_ingest_summary(results)
    raise typer.Exit(1 if any(r.outcome == IngestOutcome.FAILED for r in results) else 0)


def print_ingest_summary(results: list[IngestResult]) -> None:
    counts = Counter(r.outcome.value for r in results)
    chunks = sum(r.chunks for r in results if r.outcome.value in ("added", "updated"))
    out.print(
        f"{len(results)} files: [green]{counts['added']} added[/], "
        f"[cyan]{counts['updated']} updated[/], {counts['unchanged']} unchanged, "
        f"[red]{counts['failed']} failed[/] ({chunks} chunks written)",
        highlight=False,
    )
    failed = [r for r in results if r.outcome == IngestOutcome.FAILED]
    if failed:
        print_failures([(r.source, r.reason, r.error) for r in failed])
    warned = [r for r in results if r.warnings]
    for r in warned:
        out.print(f"[yellow]warning[/] {Path(r.source).name}: {'; '.join(r.warnings)}")


# -- ask and search ------------------------------------------------------------------


def _filters(document: list[str] | None, source: list[str] | None, type_: list[str] | None) -> Any:
    from retrieval.protocols import SearchFilters

    f = SearchFilters(document_ids=document or [], sources=source or [], file_types=type_ or [])
    return f or None


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=50)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the /v1/ask body.")] = False,
    document: Annotated[list[str] | None, typer.Option(help="Only this document id.")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only this source.")] = None,
    file_type: Annotated[list[str] | None, typer.Option("--type", help="Only this type.")] = None,
) -> None:
    """Answer a question from the indexed documents, with citations."""
    from api.schemas import AskResponse

    if not question.strip():
        raise fail("the question is empty")
    filters = _filters(document, source, file_type)
    answer = run_guarded(lambda: services().answering.ask(question, top_k=top_k, filters=filters))
    if as_json:
        out.print_json(AskResponse.of(answer).model_dump_json())
        return
    out.print(answer.text, highlight=False)
    for n, c in enumerate(answer.citations, start=1):
        where = f"p. {c.page}" if c.page is not None else ""
        section = f" § {c.section}" if c.section else ""
        # soft_wrap: a long path stays one line (the terminal wraps it, copy keeps it whole)
        out.print(f"[bold][{n}][/] {c.source} {where}{section}", highlight=False, soft_wrap=True)
        out.print(f"    “{c.text[:300]}”", style="dim", highlight=False)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=50)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the /v1/search body.")] = False,
) -> None:
    """Show the ranked passages a question retrieves."""
    from api.schemas import SearchResponse, SearchResult

    retrieval = run_guarded(lambda: services().retriever.retrieve(query, top_k))
    body = SearchResponse(
        results=[SearchResult.of(h) for h in retrieval.hits], timings_ms=retrieval.timings_ms
    )
    if as_json:
        out.print_json(body.model_dump_json())
        return
    for n, r in enumerate(body.results, start=1):
        page = f" p. {r.page}" if r.page is not None else ""
        out.print(
            f"[bold]{n}.[/] {r.source}{page}  (relevance {r.relevance})",
            highlight=False,
            soft_wrap=True,
        )
        out.print("   " + r.text[:240].replace("\n", " "), style="dim", highlight=False)


# -- documents -----------------------------------------------------------------------


@documents_app.command("list")
def documents_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    status: Annotated[str | None, typer.Option(help="Only documents in this status.")] = None,
) -> None:
    """List indexed (and failed) documents."""
    from api.schemas import DocumentOut

    docs = run_guarded(lambda: services().records.list(status=status))
    if as_json:
        out.print_json(json.dumps([DocumentOut.of(d).model_dump(mode="json") for d in docs]))
        return
    table = Table("document id", "source", "status", "chunks", "error")
    for d in docs:
        table.add_row(d.document_id, d.source, d.status.value, str(d.chunk_count), d.error or "")
    out.print(table)
    out.print(f"{len(docs)} documents", highlight=False)


@documents_app.command("rm")
def documents_rm(document_id: Annotated[str, typer.Argument(help="The document id.")]) -> None:
    """Remove a document and its chunks from the index."""
    from docqa.locking import writer_lock

    def run() -> int:
        docqa = services()
        with writer_lock(docqa.settings, holder="docqa documents rm"):
            return int(docqa.indexer().delete_document(document_id))

    removed = run_guarded(run)
    out.print(f"removed {document_id} ({removed} chunks)", highlight=False)


# -- sync and reindex ----------------------------------------------------------------


@app.command()
def sync(
    source: Annotated[
        str, typer.Argument(help="A folder, or s3://bucket/prefix (needs the s3 extra).")
    ],
    max_delete_share: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Deletion guard for this run (DOCQA_SYNC__MAX_DELETE_SHARE): delete nothing "
            "when more than this share of the source's documents would go.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Mirror a source into the index: new files added, changed ones re-indexed, documents
    whose files are gone removed. Exit status 0: done; 1: some files failed; 2: the source
    cannot be listed (nothing changed); 3: the deletion guard stopped the deletions
    (nothing deleted)."""
    from docqa.locking import writer_lock
    from ingestion.sources import open_source
    from ingestion.sync import sync_source

    def run() -> Any:
        docqa = services()
        src = open_source(source, docqa.settings)
        share = (
            docqa.settings.sync.max_delete_share if max_delete_share is None else max_delete_share
        )
        with writer_lock(docqa.settings, holder="docqa sync"):
            indexer = docqa.indexer()
            indexer.repair()
            return sync_source(indexer, src, max_delete_share=share)

    report = run_guarded(run)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    elif not report.error:
        out.print(report.summary(), highlight=False, soft_wrap=True)
        if report.failures:
            print_failures([(str(f["source"]), f["reason"], f["error"]) for f in report.failures])
    if report.error:
        raise fail(f"{report.source} cannot be listed, nothing changed: {report.error}")
    if report.deletion_blocked:
        raise fail(
            f"deletion aborted, nothing deleted ({report.pending_deletions} documents "
            f"would have gone): {report.deletion_blocked} (--max-delete-share 1)",
            code=3,
        )
    raise typer.Exit(1 if report.failed else 0)


@app.command()
def reindex(
    grace_s: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seconds the previous collection is kept after the switch "
            "(DOCQA_REINDEX__GRACE_S); 0 drops it at once.",
            show_default=False,
        ),
    ] = None,
    retire_only: Annotated[
        bool,
        typer.Option(
            "--retire-only",
            help="Rebuild nothing: drop the previous collections whose grace period is over.",
        ),
    ] = False,
) -> None:
    """Rebuild the whole index into a new collection (after changing the embedding model or
    the chunking), verify it, and switch to it; queries are answered from the old one until
    then. A failed rebuild leaves the serving collection as it was (exit status 2)."""
    from docqa.locking import writer_lock

    def run() -> tuple[Any, list[str], float]:
        docqa = services()
        grace = docqa.settings.reindex.grace_s if grace_s is None else grace_s
        with writer_lock(docqa.settings, holder="docqa reindex"):
            reindexer = docqa.reindexer()
            report = None
            if not retire_only:
                with ProgressBar("rebuilding", disable=not err.is_terminal) as bar:
                    report = reindexer.rebuild(on_progress=bar.update)
            dropped = reindexer.retire_old(grace_s=grace)
            return report, dropped, reindexer.grace_remaining(grace_s=grace)

    report, dropped, left = run_guarded(run)
    if report is not None:
        out.print(report.summary(), highlight=False, soft_wrap=True)
        for c in report.carried:
            out.print(
                f"[yellow]carried over[/] {c['source']}: {c['why']}",
                highlight=False,
                soft_wrap=True,
            )
    out.print(f"dropped: {', '.join(dropped) or 'nothing'}", highlight=False, soft_wrap=True)
    if left > 0:
        out.print(
            f"the previous collection is kept {left:.0f} s more for requests still using it; "
            "`docqa reindex --retire-only` drops it after that",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def prepare() -> None:
    """Load the embedding model now, exporting it to int8 ONNX first when the backend is
    onnx-int8 (~10 s, once per machine and user), so the first ingest or question does not
    pay for it. `make install` runs it."""
    import time

    def run() -> tuple[Any, float]:
        embedder = services().embedder
        t0 = time.perf_counter()
        embedder.embed_query("warm up")
        return embedder, time.perf_counter() - t0

    embedder, seconds = run_guarded(run)
    where = getattr(embedder, "cache_dir", None)
    out.print(
        f"embedding model {embedder.model_id} ready ({embedder.__class__.__name__}"
        + (f", exports kept in {where}" if where else "")
        + f") in {seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )


# -- serve -----------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (DOCQA_API__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (DOCQA_API__PORT).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes (DOCQA_API__WORKERS); more than one needs a Chroma server.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API."""
    import os

    import uvicorn

    settings = State.settings()
    given = (("host", host), ("port", port), ("workers", workers))
    api = settings.api.model_copy(update={k: v for k, v in given if v is not None})
    try:
        settings = load_settings(**State.overrides, api=api.model_dump())
    except DocqaError as exc:
        raise fail(exc.message) from None
    if api.workers > 1 and not settings.chroma_url:
        raise fail(
            f"{api.workers} workers need a Chroma server: the on-disk index takes one writer "
            "process. Set DOCQA_CHROMA_URL (or --chroma-url), or serve with one worker."
        )
    # log_config=None: uvicorn's own records go through docqa's handler (DOCQA_LOG_FORMAT,
    # the request id) instead of uvicorn's default formatters.
    run: dict[str, Any] = {
        "host": api.host,
        "port": api.port,
        "log_config": None,
        "log_level": settings.log_level.lower(),
    }
    if api.workers == 1:
        from api.main import create_app

        uvicorn.run(create_app(settings), **run)
        return
    # Each worker process builds its app from the environment: hand it this command's flags.
    for name, value in State.overrides.items():
        os.environ[f"DOCQA_{name.upper()}"] = str(value)
    uvicorn.run("api.main:create_app", factory=True, workers=api.workers, **run)


def entrypoint() -> None:
    try:
        app()
    except DocqaError as exc:  # settings errors raised before a command runs
        err.print(f"error: {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()
