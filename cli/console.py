"""What every `docqa` command shares: the settings the global flags chose, the docqa they
build, output on stdout and stderr, and how errors end a command."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from app import Docqa
from docqa.errors import DocqaError
from docqa.settings import Settings, load_settings

T = TypeVar("T")

out = Console()
err = Console(stderr=True)


class State:
    """The global flags of this invocation (`docqa --data-dir ... COMMAND`)."""

    overrides: ClassVar[dict[str, Any]] = {}
    collection: ClassVar[str | None] = None
    _settings: ClassVar[Settings | None] = None

    @classmethod
    def settings(cls) -> Settings:
        if cls._settings is None:
            cls._settings = load_settings(**cls.overrides)
        return cls._settings


def services() -> Docqa:
    """The parts of the collection this invocation names (`--collection`; default: the
    default collection)."""
    return Docqa(State.settings()).for_collection(State.collection)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_guarded(fn: Any) -> Any:
    """Turn docqa's errors into a message and exit status 2 instead of a traceback."""
    try:
        return fn()
    except DocqaError as exc:
        raise fail(exc.message) from None


def print_failures(failures: list[tuple[str, str | None, str | None]]) -> None:
    """A table of files that failed: (source, reason, error)."""
    table = Table("file", "reason", "what went wrong", title="Failed", title_justify="left")
    for source, reason, error in failures:
        table.add_row(Path(source).name, reason or "", error or "")
    out.print(table)


class ProgressBar:
    """A transient progress bar on stderr (`ingest`, `reindex`, `eval run`), labelled with
    what is being worked on."""

    def __init__(self, label: str | None, *, total: int | None = None, disable: bool) -> None:
        """:param label: the first bar's label; None starts with no bar (`stage` adds them)."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=disable,
        )
        self._tasks: dict[str, Any] = {}
        self._label = label or ""
        if label is not None:
            self._tasks[label] = self._progress.add_task(label, total=total)

    def __enter__(self) -> ProgressBar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def advance(self, source: str) -> None:
        """One more file done."""
        self._progress.update(
            self._tasks[self._label], advance=1, description=Path(source).name[:40]
        )

    def update(self, done: int, total: int, source: str) -> None:
        """`done` of `total` files done (reindex's on_progress)."""
        self._progress.update(
            self._tasks[self._label],
            completed=done,
            total=total,
            description=Path(source).name[:40],
        )

    def stage(self, stage: str, done: int, total: int) -> None:
        """`done` of `total` in a named stage, each stage its own bar (the eval runner's
        "indexing" then "questions")."""
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)
