"""Ratings of answers turned into eval material: a benchmark of the up-voted questions that
`docqa eval run` runs, a review file of the ones a person must answer, and the thumbs-down
rate over time in the run's report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from evals.benchmark import load_benchmark
from evals.feedback import (
    NOT_FOUND_NOTE,
    REVIEW_NOTE,
    build_export,
    rate_answer,
    ratings_by_day,
)
from evals.store import EvalStore, FeedbackRecord
from tests.evals.conftest import write_fixture_benchmark

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _cited(document_id: str, source: str, text: str, page: int | None = None) -> dict[str, Any]:
    return {
        "document_id": document_id,
        "source": source,
        "page": page,
        "section": "",
        "chunk_id": f"{document_id}:c:00001",
        "text": text,
        "score": 0.7,
    }


def _rating(n: int, rating: str, question: str, citations: list[dict[str, Any]], **kw: Any):
    return FeedbackRecord(
        feedback_id=f"fb_{n:04d}",
        created_at=T0 + timedelta(minutes=n),
        rating=rating,
        question=question,
        answer=kw.pop("answer", "An answer. [1]"),
        citations=citations,
        **kw,
    )


def test_up_votes_become_questions_with_what_they_cited_as_gold(tmp_path: Path) -> None:
    store = EvalStore(f"sqlite:///{tmp_path / 'evals.sqlite'}")
    bridge = _cited(
        "doc_b", "/srv/docs/bridges.txt", "It was completed in 1873. … Its engineer was Ilse."
    )
    other = _cited("doc_x", "notes.txt", "Unrelated text from another document.")
    for record in [
        # Rated down first, then up by someone else: the latest word counts.
        _rating(1, "down", "When was the bridge completed?", [bridge], comment="wrong year"),
        _rating(2, "up", "when was the  BRIDGE completed?", [bridge, other]),
        _rating(3, "down", "Who designed the viaduct?", [bridge], comment="it was Pell"),
        _rating(
            4,
            "up",
            "What is the canteen's menu?",
            [],
            found=False,
            answer="I could not find this in the documents.",
        ),
    ]:
        store.record_feedback(record)

    export = build_export(store.feedback())

    assert export.superseded == 1
    assert export.benchmark == [
        {
            "id": "fb_0002",
            "question": "when was the  BRIDGE completed?",
            # Each quote of the first cited document is a gold span; the other document's
            # text is not.
            "answers": ["It was completed in 1873.", "Its engineer was Ilse."],
            "document": "bridges.txt",
        }
    ]
    assert export.documents == {"bridges.txt": "doc_b"}
    review = {r["id"]: r for r in export.review}
    assert set(review) == {"fb_0003", "fb_0004"}
    down = review["fb_0003"]
    assert down["rating"] == "down" and down["comment"] == "it was Pell"
    assert down["answers"] == [] and down["document"] is None and down["note"] == REVIEW_NOTE
    assert down["cited"][0]["source"] == "/srv/docs/bridges.txt"
    assert review["fb_0004"]["note"] == NOT_FOUND_NOTE


def test_two_cited_documents_with_one_file_name_keep_apart() -> None:
    a = _cited("doc_aaaaaaaa", "/one/report.pdf", "Revenue rose by 4 percent.", page=3)
    b = _cited("doc_bbbbbbbb", "/two/report.pdf", "Costs fell by 2 percent.", page=1)
    export = build_export(
        [_rating(2, "up", "How did costs move?", [b]), _rating(1, "up", "Revenue?", [a])]
    )
    names = {row["question"]: row["document"] for row in export.benchmark}
    assert names["Revenue?"] == "report.pdf"
    assert names["How did costs move?"] == "report~bbbbbbbb.pdf"
    assert export.documents == {"report.pdf": "doc_aaaaaaaa", "report~bbbbbbbb.pdf": "doc_bbbbbbbb"}


def test_ratings_are_counted_per_day_for_the_down_rate() -> None:
    days = ratings_by_day(
        [(T0, "up"), (T0 + timedelta(hours=1), "down"), (T0 + timedelta(days=2), "down")]
    )
    assert [(d.day.isoformat(), d.up, d.down) for d in days] == [
        ("2026-11-02", 1, 1),
        ("2026-11-04", 0, 1),
    ]
    assert [d.down_rate for d in days] == [0.5, 1.0]


def test_exported_feedback_is_a_benchmark_the_eval_suite_runs(make_docqa, tmp_path: Path) -> None:
    """Ask real questions, rate the answers, export: the file loads as a benchmark and
    `docqa eval run` runs it over the copied documents."""
    corpus = write_fixture_benchmark(tmp_path / "corpus")["documents"]
    dq = make_docqa()
    dq.indexer().ingest_paths(sorted(corpus.iterdir()))
    rated = {
        "When was the Zorvath bridge completed?": "up",
        "What cools the Helvar test reactor?": "up",
        "Where does the marbled tundra bee nest?": "up",
        "How do engines rate the Quellin gambit?": "down",
    }
    for question, rating in rated.items():
        answer = dq.answering.ask(question)
        assert answer.found and answer.citations, question
        rate_answer(
            dq.eval_store,
            rating=rating,
            question=question,
            answer=answer.text,
            citations=[vars(c) for c in answer.citations],
        )

    out, copies = tmp_path / "export" / "feedback.jsonl", tmp_path / "export" / "documents"
    data = ["--data-dir", str(dq.settings.data_dir)]
    cli = CliRunner()
    exported = cli.invoke(
        app,
        [*data, "eval", "export-feedback", "--out", str(out), "--documents", str(copies), "--json"],
    )
    assert exported.exit_code == 0, exported.output
    counts = json.loads(exported.output)
    assert counts["benchmark"] == 3 and counts["review"] == 1 and counts["down_voted"] == 1
    assert counts["documents_missing"] == []
    review = [json.loads(line) for line in (out.parent / "feedback.review.jsonl").open()]
    assert [r["question"] for r in review] == ["How do engines rate the Quellin gambit?"]

    bench = load_benchmark(out, copies)
    assert {q.question for q in bench.questions} == {q for q, r in rated.items() if r == "up"}
    for q in bench.questions:
        assert q.answers and (copies / str(q.document)).is_file()

    ran = cli.invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "evaldata"),
            "eval",
            "run",
            "--benchmark",
            str(out),
            "--documents",
            str(copies),
            "--json",
        ],
    )
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.output)
    assert run["questions"] == 3
    # The gold answers are what the up-voted answers quoted, from the document they cited:
    # the same docqa finds those passages again.
    assert run["metrics"]["hit@5"] == 1.0


def test_export_without_up_votes_writes_no_benchmark(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    out = tmp_path / "feedback.jsonl"
    result = CliRunner().invoke(app, [*data, "eval", "export-feedback", "--out", str(out)])
    assert result.exit_code == 1
    assert "no up-voted answer" in result.output
    assert not out.exists()
    assert (tmp_path / "feedback.review.jsonl").read_text() == ""


def test_report_shows_the_thumbs_down_rate_beside_drift(
    stored_run: Any, eval_settings: Any, tmp_path: Path
) -> None:
    from evals.report import write_run_report
    from evals.store import open_store

    # The stored run copied into a store of this test's own: its ratings stay here.
    store = EvalStore(f"sqlite:///{tmp_path / 'evals.sqlite'}")
    run = stored_run.run
    store.save_run(run, open_store(eval_settings).results(run.run_id))
    now = datetime.now(UTC)
    for n, rating in enumerate(["up", "up", "down", "down", "down"]):
        store.record_feedback(
            FeedbackRecord(
                feedback_id=f"fb_report_{n}",
                created_at=now - timedelta(days=n % 3),
                rating=rating,
                question=f"question {n}",
                answer="answer",
            )
        )
    files = write_run_report(store, run, tmp_path / "report", settings=eval_settings)
    html = files.html.read_text()
    assert "Ratings of answers" in html
    assert "5 answers rated in the last 90 days: 60% thumbs down (3 down, 2 up)" in html
    assert "feedback" in files.plots and files.plots["feedback"].stat().st_size > 1000
    assert "60% thumbs down" in files.markdown.read_text()
