"""The eval store on SQLite and PostgreSQL: runs with their results, baselines, traffic."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from docqa.errors import NotFoundError
from evals.results import EvalRun, QuestionResult
from evals.store import EvalStore, TrafficRecord


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EvalStore:
    if request.param == "sqlite":
        return EvalStore(f"sqlite:///{tmp_path / 'evals.sqlite'}")
    return EvalStore(request.getfixturevalue("pg_url"))


def _run(bench: str, minutes: int, **kw: object) -> EvalRun:
    return EvalRun(
        run_id=f"{bench}-{minutes}-{secrets.token_hex(3)}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes),
        benchmark=bench,
        benchmark_path=f"/b/{bench}.json",
        benchmark_sha256=bench.ljust(64, "0"),
        generator="extractive",
        questions=1,
        metrics={"hit@5": 0.5},
        config={"models": {"embedding": "m"}},
        **kw,  # type: ignore[arg-type]
    )


def test_runs_round_trip_with_results_and_baselines(store: EvalStore) -> None:
    bench = "b" + secrets.token_hex(4)
    first, second, third = _run(bench, 1), _run(bench, 2), _run(bench, 3)
    result = QuestionResult(
        qid="q1", question="Why?", answers=["because"], hit_rank=2, timings_ms={"total": 12.5}
    )
    try:
        for run in (first, second, third):
            store.save_run(run, [result])
        assert [r.run_id for r in store.list_runs(benchmark=bench)] == [
            third.run_id,
            second.run_id,
            first.run_id,
        ]
        loaded = store.get_run(second.run_id)
        assert loaded.created_at == second.created_at and loaded.config == second.config
        assert store.results(second.run_id) == [result]
        assert store.get_run(third.run_id[:-2]).run_id == third.run_id  # unique prefix
        # No pinned baseline: the run before; pinned: that one.
        assert store.baseline_for(third).run_id == second.run_id
        store.set_baseline(first.run_id)
        assert store.baseline_for(third).run_id == first.run_id
        store.set_baseline(second.run_id)
        assert not store.get_run(first.run_id).is_baseline
        with pytest.raises(NotFoundError, match="several runs"):
            store.get_run(f"{bench}-")
    finally:
        for run in (first, second, third):
            store.delete_run(run.run_id)
    with pytest.raises(NotFoundError, match="no eval run"):
        store.get_run(first.run_id)


def test_traffic_window_and_pruning(store: EvalStore) -> None:
    now = datetime.now(UTC)
    marker = secrets.token_hex(6)
    records = [
        TrafficRecord(
            at=now - timedelta(days=d),
            question=f"{marker} {d}",
            question_sha256="0" * 64,
            nearest=0.5,
            top_scores=[0.5, 0.4],
            found=True,
        )
        for d in (0, 3, 10)
    ]
    store.record_traffic(records)
    recent = [
        r for r in store.traffic(since=now - timedelta(days=7)) if marker in (r.question or "")
    ]
    assert [r.question for r in recent] == [f"{marker} 0", f"{marker} 3"]
    assert recent[0].top_scores == [0.5, 0.4] and recent[0].at.tzinfo is not None
    store.prune_traffic(now + timedelta(seconds=1))
    assert not [r for r in store.traffic() if marker in (r.question or "")]
