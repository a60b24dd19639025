"""Ratings of served answers, turned into things the eval suite can use: a benchmark of the
questions people up-voted (their gold answers are what those answers cited), a review list
of the ones a person must answer, and the thumbs-down rate over time for the report.

A rating is one person's word on one answer, so an export keeps the latest rating of each
question and never invents a gold answer for a down-voted one.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from docqa.db import utcnow
from evals.store import EvalStore, FeedbackRecord

RATINGS = ("up", "down")
# How the quotes of one citation are joined in its text (the extractive answerer quotes
# sentences and joins them so); each quote is a gold span of its own.
QUOTE_SEPARATOR = " … "
REVIEW_NOTE = (
    "Rated down: write the right answer in 'answers' (short spans copied from the document) "
    "and the document's file name in 'document', then move the row into the benchmark file."
)
NOT_FOUND_NOTE = (
    "Rated up although docqa found nothing: the documents do not answer this question. Keep "
    "it for abstention checks, or answer it as above if they should."
)
UNCITED_NOTE = "Rated up, but the answer cited nothing to take a gold answer from: answer it."


def rate_answer(
    store: EvalStore,
    *,
    rating: str,
    question: str,
    answer: str,
    citations: Sequence[dict[str, Any]] = (),
    comment: str | None = None,
    found: bool = True,
    degraded: bool = False,
    index_version: str | None = None,
    key_id: str | None = None,
    collection: str | None = None,
) -> FeedbackRecord:
    """Store one rating of one answer; returns it as stored."""
    if rating not in RATINGS:
        raise ValueError(f"a rating is 'up' or 'down', not {rating!r}")
    record = FeedbackRecord(
        feedback_id=f"fb_{secrets.token_hex(8)}",
        created_at=utcnow(),
        rating=rating,
        question=question,
        answer=answer,
        comment=(comment or "").strip() or None,
        citations=[dict(c) for c in citations],
        found=found,
        degraded=degraded,
        index_version=index_version,
        key_id=key_id,
        collection=collection,
    )
    store.record_feedback(record)
    return record


# -- export ------------------------------------------------------------------------------


@dataclass
class FeedbackExport:
    """What `docqa eval export-feedback` writes.

    benchmark: JSONL rows `{"id", "question", "answers", "document"}` as evals/benchmark.py
    reads them; review: rows a person completes; documents: each `document` name used in
    the benchmark -> the document id it stands for (to copy the files beside it)."""

    benchmark: list[dict[str, Any]] = field(default_factory=list)
    review: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, str] = field(default_factory=dict)
    superseded: int = 0  # older ratings of a question rated again later


def _question_key(question: str) -> str:
    return " ".join(question.lower().split())


def gold_spans(citations: Iterable[dict[str, Any]]) -> list[str]:
    """The quoted texts of the citations, each quote once, in order."""
    spans: list[str] = []
    for citation in citations:
        for quote in str(citation.get("text") or "").split(QUOTE_SEPARATOR):
            quote = " ".join(quote.split())
            if quote and quote not in spans:
                spans.append(quote)
    return spans


def _cited(record: FeedbackRecord) -> list[dict[str, Any]]:
    return [
        {k: c.get(k) for k in ("document_id", "source", "page", "section", "text")}
        for c in record.citations
    ]


def build_export(records: Iterable[FeedbackRecord]) -> FeedbackExport:
    """Turn ratings (newest first, as the store lists them) into benchmark and review rows.

    Up-voted answers that cite something become questions whose gold document is the one
    cited first and whose gold answers are the texts quoted from it. Everything else goes
    to review: down-voted answers (docqa has no right answer to offer, a person must write
    it), and up-voted ones with nothing cited ("not found" confirmed, or an uncited answer).
    """
    export = FeedbackExport()
    seen: set[str] = set()
    latest: list[FeedbackRecord] = []
    for record in records:
        key = _question_key(record.question)
        if key in seen:
            export.superseded += 1
        else:
            seen.add(key)
            latest.append(record)
    # Oldest first: a later export keeps the earlier rows, and their document names, as
    # they were.
    latest.reverse()
    names: dict[str, str] = {}  # document id -> its name in the benchmark
    for record in latest:
        row_id = record.feedback_id
        first = record.citations[0] if record.citations else None
        if record.rating == "up" and record.found and first is not None:
            document_id = str(first.get("document_id") or first.get("source"))
            same_document = [
                c
                for c in record.citations
                if str(c.get("document_id") or c.get("source")) == document_id
            ]
            answers = gold_spans(same_document)
            if answers:
                name = names.get(document_id) or _document_name(
                    str(first.get("source") or document_id), document_id, export.documents
                )
                names[document_id] = name
                export.documents[name] = document_id
                export.benchmark.append(
                    {
                        "id": row_id,
                        "question": record.question,
                        "answers": answers,
                        "document": name,
                    }
                )
                continue
        if record.rating == "down":
            note = REVIEW_NOTE
        elif not record.found:
            note = NOT_FOUND_NOTE
        else:
            note = UNCITED_NOTE
        export.review.append(
            {
                "id": row_id,
                "question": record.question,
                "answers": [],
                "document": None,
                "rating": record.rating,
                "comment": record.comment,
                "answer_given": record.answer,
                "cited": _cited(record),
                "rated_at": record.created_at.isoformat(),
                "note": note,
            }
        )
    return export


def _document_name(source: str, document_id: str, taken: dict[str, str]) -> str:
    """The cited document's file name, as a JSONL benchmark names it (the eval runner
    matches a name, stem or relative path in the documents folder); two documents with one
    name get the id in the second."""
    name = Path(source.replace("\\", "/")).name or document_id
    if name in taken and taken[name] != document_id:
        stem, suffix = Path(name).stem, Path(name).suffix
        name = f"{stem}~{document_id[-8:]}{suffix}"
    return name


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def copy_documents(
    export: FeedbackExport, folder: Path, locate: Callable[[str], Path | None]
) -> list[str]:
    """Copy the file of every document the benchmark names into `folder`, under that name,
    so `docqa eval run --documents FOLDER` finds them. Returns the names whose file could
    not be found (`locate` maps a document id to its file, or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = []
    for name, document_id in export.documents.items():
        source = locate(document_id)
        if source is None or not source.is_file():
            missing.append(name)
            continue
        shutil.copy2(source, folder / name)
    return missing


# -- the thumbs-down rate over time ------------------------------------------------------


@dataclass(frozen=True)
class RatingDay:
    day: date
    up: int
    down: int

    @property
    def total(self) -> int:
        return self.up + self.down

    @property
    def down_rate(self) -> float:
        return self.down / self.total if self.total else 0.0


def ratings_by_day(ratings: Iterable[tuple[datetime, str]]) -> list[RatingDay]:
    """Up and down counts per UTC day that had ratings, oldest first."""
    days: dict[date, list[int]] = {}
    for at, rating in ratings:
        counts = days.setdefault(at.date(), [0, 0])
        counts[0 if rating == "up" else 1] += 1
    return [RatingDay(day, up, down) for day, (up, down) in sorted(days.items())]
