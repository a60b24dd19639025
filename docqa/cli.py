"""The `docqa` command. Settings come from DOCQA_* variables; the global flags override them."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from rich.console import Console
from rich.table import Table

from docqa.errors import DocqaError
from docqa.settings import Settings, load_settings

app = typer.Typer(
    help="docqa: ask questions of your own documents and get answers with citations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
documents_app = typer.Typer(help="List and remove indexed documents.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")

out = Console()
err = Console(stderr=True)


class State:
    overrides: ClassVar[dict[str, Any]] = {}
    _settings: ClassVar[Settings | None] = None

    @classmethod
    def settings(cls) -> Settings:
        if cls._settings is None:
            cls._settings = load_settings(**cls.overrides)
        return cls._settings


def services() -> Any:
    from docqa.services import Docqa

    return Docqa(State.settings())


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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
) -> None:
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if chroma_url is not None:
        overrides["chroma_url"] = chroma_url
    if database_url is not None:
        overrides["database_url"] = database_url
    State.overrides = overrides
    State._settings = None


def run_guarded(fn: Any) -> Any:
    """Turn docqa's errors into a message and exit status 2 instead of a traceback."""
    try:
        return fn()
    except DocqaError as exc:
        raise fail(exc.message) from None


# -- ingest ------------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    force: Annotated[bool, typer.Option(help="Re-index even unchanged files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Index files and folders. Exit status 0 if every file indexed, 1 if some failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from docqa.locking import writer_lock
    from ingestion.pipeline import iter_files

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise fail("no such file or folder: " + ", ".join(str(p) for p in missing))
    files = list(iter_files(paths))
    if not files:
        raise fail("no files found under " + ", ".join(str(p) for p in paths), code=1)

    def run() -> list[Any]:
        docqa = services()
        with writer_lock(docqa.settings, holder="docqa ingest"):
            indexer = docqa.indexer()
            indexer.repair()
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
                disable=as_json or not err.is_terminal,
            ) as progress:
                task = progress.add_task("indexing", total=len(files))

                def advance(result: Any) -> None:
                    progress.update(task, advance=1, description=Path(result.source).name[:40])

                return indexer.ingest_paths(files, force=force, on_result=advance)

    results = run_guarded(run)
    if as_json:
        from api.schemas import DocumentResult

        out.print_json(json.dumps([DocumentResult.of(r).model_dump() for r in results]))
    else:
        print_ingest_summary(results)
    raise typer.Exit(1 if any(r.outcome.value == "failed" for r in results) else 0)


def print_ingest_summary(results: list[Any]) -> None:
    counts = Counter(r.outcome.value for r in results)
    chunks = sum(r.chunks for r in results if r.outcome.value in ("added", "updated"))
    out.print(
        f"{len(results)} files: [green]{counts['added']} added[/], "
        f"[cyan]{counts['updated']} updated[/], {counts['unchanged']} unchanged, "
        f"[red]{counts['failed']} failed[/] ({chunks} chunks written)",
        highlight=False,
    )
    failed = [r for r in results if r.outcome.value == "failed"]
    if failed:
        table = Table("file", "reason", "what went wrong", title="Failed", title_justify="left")
        for r in failed:
            table.add_row(Path(r.source).name, r.reason or "", r.error or "")
        out.print(table)
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
    answer = run_guarded(
        lambda: services().ask(question, top_k=top_k, filters=_filters(document, source, file_type))
    )
    if as_json:
        out.print_json(AskResponse.of(answer).model_dump_json())
        return
    out.print(answer.text, highlight=False)
    for n, c in enumerate(answer.citations, start=1):
        where = f"p. {c.page}" if c.page is not None else ""
        section = f" § {c.section}" if c.section else ""
        out.print(f"[bold][{n}][/] {c.source} {where}{section}", highlight=False)
        out.print(f"    “{c.text[:300]}”", style="dim", highlight=False)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=50)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the /v1/search body.")] = False,
) -> None:
    """Show the ranked passages a question retrieves."""
    from api.schemas import SearchResponse, SearchResult

    retrieval = run_guarded(lambda: services().search(query, top_k=top_k))
    body = SearchResponse(
        results=[SearchResult.of(h) for h in retrieval.hits], timings_ms=retrieval.timings_ms
    )
    if as_json:
        out.print_json(body.model_dump_json())
        return
    for n, r in enumerate(body.results, start=1):
        page = f" p. {r.page}" if r.page is not None else ""
        out.print(f"[bold]{n}.[/] {r.source}{page}  (relevance {r.relevance})", highlight=False)
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


# -- serve -----------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (DOCQA_API__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (DOCQA_API__PORT).")] = None,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    settings = State.settings()
    api = settings.api.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
    )
    try:
        settings = load_settings(**State.overrides, api=api.model_dump())
    except DocqaError as exc:
        raise fail(exc.message) from None
    from api.main import create_app

    uvicorn.run(create_app(settings), host=api.host, port=api.port, log_level="info")


def entrypoint() -> None:
    try:
        app()
    except DocqaError as exc:  # settings errors raised before a command runs
        err.print(f"error: {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()
