"""Stored eval runs, their per-question results, the live questions the API served, and
the ratings people gave its answers (thumbs up or down, from the page or `POST /v1/feedback`).

SQLite by default (the record store's file in the data folder), PostgreSQL or any
SQLAlchemy URL through DOCQA_EVALS__DATABASE_URL. Tables are created on first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    desc,
    insert,
    select,
    update,
)

from docqa.db import as_utc, create_tables, get_engine
from docqa.errors import NotFoundError
from docqa.settings import Settings
from evals.results import EvalRun, QuestionResult

metadata = MetaData()

runs = Table(
    "docqa_eval_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("benchmark", String(256), nullable=False, index=True),
    Column("benchmark_path", Text, nullable=False),
    Column("benchmark_sha256", String(64), nullable=False, index=True),
    Column("generator", String(32), nullable=False),
    Column("questions", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("git_commit", String(64)),
    Column("index_version", Text),
    Column("duration_s", Float, nullable=False, default=0.0),
    Column("report_dir", Text),
    Column("is_baseline", Boolean, nullable=False, default=False),
    Column("label", Text),
    Column("warnings", JSON, nullable=False, default=list),
    Column("drift", JSON),
)

question_results = Table(
    "docqa_eval_questions",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("qid", Text, nullable=False),
    Column("result", JSON, nullable=False),
)

traffic = Table(
    "docqa_eval_traffic",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("question", Text),  # None when only hashes are kept
    Column("question_sha256", String(64), nullable=False),
    Column("nearest", Float),  # None for an answer served from the cache
    Column("top_scores", JSON, nullable=False, default=list),
    Column("found", Boolean, nullable=False),
    Column("cached", Boolean, nullable=False, default=False),
    Column("total_ms", Float),
)

# Tables are created, never migrated: every column a rating may need is here from the start.
feedback = Table(
    "docqa_eval_feedback",
    metadata,
    Column("feedback_id", String(32), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("rating", String(8), nullable=False),  # up | down
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("comment", Text),
    Column("citations", JSON, nullable=False, default=list),
    Column("found", Boolean, nullable=False, default=True),
    Column("degraded", Boolean, nullable=False, default=False),
    Column("index_version", Text),  # the index serving when the rating came
    Column("key_id", String(32)),  # who rated: a key id, "bootstrap" or "anonymous"
    Column("collection", String(512)),  # the collection asked, once collections exist
)

_RUN_COLUMNS = [c.name for c in runs.columns]


@dataclass
class TrafficRecord:
    at: datetime
    question: str | None
    question_sha256: str
    nearest: float | None
    top_scores: list[float]
    found: bool
    cached: bool = False
    total_ms: float | None = None


@dataclass
class FeedbackRecord:
    """One rating of one answer, with what was rated: the question, the answer and its
    citations (each a dict of the API's citation shape)."""

    feedback_id: str
    created_at: datetime
    rating: str
    question: str
    answer: str
    comment: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    found: bool = True
    degraded: bool = False
    index_version: str | None = None
    key_id: str | None = None
    collection: str | None = None


def eval_dir(settings: Settings) -> Path:
    """Where benchmark indexes and reports go (DOCQA_EVALS__WORK_DIR)."""
    return settings.evals.work_dir or settings.data_dir / "evals"


def store_url(settings: Settings) -> str:
    return settings.evals.database_url or settings.resolved_database_url


def open_store(settings: Settings) -> EvalStore:
    """The eval store the settings name (DOCQA_EVALS__DATABASE_URL, else the record store's
    database)."""
    return EvalStore(store_url(settings))


class EvalStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)
        create_tables(self.engine, metadata)

    # -- runs ----------------------------------------------------------------------------

    def save_run(self, run: EvalRun, results: Sequence[QuestionResult]) -> None:
        row = {name: getattr(run, name) for name in _RUN_COLUMNS}
        with self.engine.begin() as conn:
            conn.execute(insert(runs).values(**row))
            if results:
                conn.execute(
                    insert(question_results),
                    [
                        {"run_id": run.run_id, "position": i, "qid": r.qid, "result": r.to_dict()}
                        for i, r in enumerate(results)
                    ],
                )

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))

    def delete_run(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(question_results).where(question_results.c.run_id == run_id))
            conn.execute(delete(runs).where(runs.c.run_id == run_id))

    def list_runs(
        self,
        *,
        benchmark_sha256: str | None = None,
        benchmark: str | None = None,
        before: datetime | None = None,
        limit: int | None = 50,
    ) -> list[EvalRun]:
        """Runs, newest first."""
        query = select(runs).order_by(desc(runs.c.created_at), desc(runs.c.run_id))
        if benchmark_sha256:
            query = query.where(runs.c.benchmark_sha256 == benchmark_sha256)
        if benchmark:
            query = query.where(runs.c.benchmark == benchmark)
        if before is not None:
            query = query.where(runs.c.created_at < before)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_run_of(row) for row in conn.execute(query)]

    def get_run(self, ref: str) -> EvalRun:
        """A run by id, unique id prefix, or `latest`.

        :raises NotFoundError: no run matches, or a prefix matches several.
        """
        ref = ref.strip()
        if ref == "latest":
            latest = self.list_runs(limit=1)
            if not latest:
                raise NotFoundError("no eval runs are stored yet; run `docqa eval run` first")
            return latest[0]
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == ref)).first()
            if row is not None:
                return _run_of(row)
            if not re.fullmatch(r"[A-Za-z0-9_-]+", ref):
                raise NotFoundError(f"no eval run {ref!r}", param="run_id")
            rows = conn.execute(select(runs).where(runs.c.run_id.like(f"{ref}%")).limit(2)).all()
        if len(rows) == 1:
            return _run_of(rows[0])
        if rows:
            raise NotFoundError(
                f"{ref!r} matches several runs; give more of the id", param="run_id"
            )
        raise NotFoundError(f"no eval run {ref!r} (see `docqa eval list`)", param="run_id")

    def results(self, run_id: str) -> list[QuestionResult]:
        query = (
            select(question_results.c.result)
            .where(question_results.c.run_id == run_id)
            .order_by(question_results.c.position)
        )
        with self.engine.connect() as conn:
            return [QuestionResult.from_dict(row.result) for row in conn.execute(query)]

    def set_baseline(self, run_id: str) -> EvalRun:
        """Make a run the baseline of its benchmark (and unset the previous one)."""
        run = self.get_run(run_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.benchmark_sha256 == run.benchmark_sha256)
                .values(is_baseline=False)
            )
            conn.execute(update(runs).where(runs.c.run_id == run.run_id).values(is_baseline=True))
        run.is_baseline = True
        return run

    def baseline_for(self, run: EvalRun) -> EvalRun | None:
        """The pinned baseline of the run's benchmark, or else the run before it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs).where(
                    runs.c.benchmark_sha256 == run.benchmark_sha256,
                    runs.c.is_baseline.is_(True),
                    runs.c.run_id != run.run_id,
                )
            ).first()
        if row is not None:
            return _run_of(row)
        return self.previous(run)

    def previous(self, run: EvalRun) -> EvalRun | None:
        earlier = self.list_runs(
            benchmark_sha256=run.benchmark_sha256, before=run.created_at, limit=1
        )
        return earlier[0] if earlier else None

    # -- live traffic --------------------------------------------------------------------

    def record_traffic(self, records: Iterable[TrafficRecord]) -> int:
        rows = [vars(r) for r in records]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(traffic), rows)
        return len(rows)

    def traffic(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 5000
    ) -> list[TrafficRecord]:
        """Recorded questions, newest first."""
        query = select(traffic).order_by(desc(traffic.c.at), desc(traffic.c.id)).limit(limit)
        if since is not None:
            query = query.where(traffic.c.at >= since)
        if until is not None:
            query = query.where(traffic.c.at <= until)
        with self.engine.connect() as conn:
            out = []
            for row in conn.execute(query):
                data = dict(row._mapping)
                data.pop("id")
                data["at"] = as_utc(data["at"])
                data["top_scores"] = list(data.get("top_scores") or [])
                out.append(TrafficRecord(**data))
            return out

    def prune_traffic(self, older_than: datetime) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(delete(traffic).where(traffic.c.at < older_than)).rowcount)

    # -- ratings of answers ---------------------------------------------------------------

    def record_feedback(self, record: FeedbackRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(feedback).values(**vars(record)))

    def feedback(
        self,
        *,
        since: datetime | None = None,
        rating: str | None = None,
        limit: int | None = None,
    ) -> list[FeedbackRecord]:
        """Ratings, newest first."""
        query = select(feedback).order_by(desc(feedback.c.created_at), desc(feedback.c.feedback_id))
        if since is not None:
            query = query.where(feedback.c.created_at >= since)
        if rating is not None:
            query = query.where(feedback.c.rating == rating)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            out = []
            for row in conn.execute(query):
                data = dict(row._mapping)
                data["created_at"] = as_utc(data["created_at"])
                data["citations"] = list(data.get("citations") or [])
                out.append(FeedbackRecord(**data))
            return out

    def ratings(self, *, since: datetime | None = None) -> list[tuple[datetime, str]]:
        """(when, up or down) of every rating since `since`, oldest first: what the rate
        over time is counted from, without reading the answers."""
        query = select(feedback.c.created_at, feedback.c.rating).order_by(feedback.c.created_at)
        if since is not None:
            query = query.where(feedback.c.created_at >= since)
        with self.engine.connect() as conn:
            return [(at.replace(tzinfo=at.tzinfo or UTC), r) for at, r in conn.execute(query)]


def _run_of(row: Any) -> EvalRun:
    data = dict(row._mapping)
    data["created_at"] = as_utc(data["created_at"])
    data["warnings"] = list(data.get("warnings") or [])
    data["is_baseline"] = bool(data.get("is_baseline"))
    return EvalRun(**data)
