"""Drift: detected on a shifted question set, not on a resample of the benchmark; live
questions recorded by Docqa.ask, with text or hashes only, or not at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from docqa.settings import Settings, load_settings
from evals.drift import Sample, compare_samples, drift_against_run, mmd_permutation_test
from evals.store import open_store
from tests.evals.conftest import off_topic_questions, split_in_two, virus_questions


def _sample(embedder: Any, questions: list[str], nearest: float, found: float) -> Sample:
    rng = np.random.default_rng(len(questions))
    n = len(questions)
    return Sample(
        questions=n,
        embeddings=embedder.embed_queries(questions),
        nearest=list(np.clip(rng.normal(nearest, 0.05, n), -1, 1)),
        found=[i < round(found * n) for i in range(n)],
    )


def test_resample_of_the_benchmark_is_not_drift(embedder: Any) -> None:
    first, second = split_in_two(virus_questions())
    report = compare_samples(
        _sample(embedder, first, 0.6, 0.95),
        _sample(embedder, second, 0.6, 0.95),
        permutations=300,
    )
    assert report.embedding is not None and report.scores is not None
    assert not report.significant, report.verdict
    assert report.embedding["p_value"] > 0.05
    assert report.verdict.startswith("no significant drift")


def test_shifted_questions_are_drift(embedder: Any) -> None:
    reference, _ = split_in_two(virus_questions())
    shifted, _ = split_in_two(off_topic_questions())
    report = compare_samples(
        _sample(embedder, reference, 0.6, 0.95),
        _sample(embedder, shifted, 0.25, 0.3),
        permutations=300,
    )
    assert report.significant
    assert report.embedding["significant"] and report.embedding["p_value"] < 0.01
    assert report.embedding["centroid_distance"] > 0.1
    assert report.embedding["ood_share"] > 0.5
    assert report.scores["significant"] and report.not_found["significant"]
    assert report.verdict.startswith("significant drift")


def test_mmd_permutation_p_value_is_calibrated_enough() -> None:
    rng = np.random.default_rng(1)
    same = [
        mmd_permutation_test(
            rng.normal(size=(40, 8)), rng.normal(size=(40, 8)), permutations=200, seed=s
        )[1]
        for s in range(10)
    ]
    assert sum(p < 0.05 for p in same) <= 2
    _, p = mmd_permutation_test(
        rng.normal(size=(40, 8)), rng.normal(0.8, size=(40, 8)), permutations=200
    )
    assert p < 0.01


def test_too_few_live_questions_give_no_verdict(embedder: Any) -> None:
    reference = _sample(embedder, virus_questions()[:40], 0.6, 0.95)
    live = _sample(embedder, off_topic_questions()[:5], 0.2, 0.2)
    report = compare_samples(reference, live, min_questions=30)
    assert not report.significant
    assert report.verdict.startswith("no drift verdict")


def _serving(settings: Settings, embedder: Any, fixture_benchmark: dict[str, Any]) -> Any:
    from app import Docqa

    dq = Docqa(settings, embedder=embedder)
    dq.indexer().ingest_paths(sorted(fixture_benchmark["documents"].iterdir()))
    return dq


@pytest.mark.parametrize("mode", ["full", "hashes", "off"])
def test_served_questions_are_recorded_as_configured(
    mode: str, tmp_path: Any, embedder: Any, fixture_benchmark: dict[str, Any]
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", evals={"record_traffic": mode})
    dq = _serving(settings, embedder, fixture_benchmark)
    dq.answering.ask("When was the Zorvath bridge completed?")
    dq.answering.ask("When was the Zorvath bridge completed?")  # the second comes from the cache
    dq.answering.ask("How do I bake a sourdough loaf?")
    assert dq.traffic.flush(10)
    records = open_store(settings).traffic()
    if mode == "off":
        assert records == []
        return
    assert len(records) == 3
    newest_first = list(reversed(records))
    assert [r.cached for r in newest_first] == [False, True, False]
    assert newest_first[0].found and newest_first[0].nearest > 0.5
    assert newest_first[0].top_scores and newest_first[1].nearest is None
    assert not newest_first[2].found
    if mode == "full":
        assert newest_first[0].question == "When was the Zorvath bridge completed?"
    else:
        assert all(r.question is None for r in records)
        assert len(newest_first[0].question_sha256) == 64


def test_recording_failure_never_breaks_an_answer(
    tmp_path: Any, embedder: Any, fixture_benchmark: dict[str, Any]
) -> None:
    bad = tmp_path / "not-a-dir"
    bad.write_text("a file where the eval database's folder should be")
    settings = load_settings(
        data_dir=tmp_path / "data", evals={"database_url": f"sqlite:///{bad}/evals.sqlite"}
    )
    dq = _serving(settings, embedder, fixture_benchmark)
    answer = dq.answering.ask("When was the Zorvath bridge completed?")
    assert answer.found and "1873" in answer.text and answer.citations
    dq.traffic.flush(10)


def test_drift_of_live_traffic_against_a_stored_run(
    tmp_path: Any,
    stored_run: Any,
    eval_settings: Settings,
    embedder: Any,
    fixture_benchmark: dict[str, Any],
) -> None:
    """Off-topic live questions against the fixture benchmark's run: drift on every signal;
    the benchmark's own questions asked live: none."""
    from evals.benchmark import load_benchmark

    settings = eval_settings.model_copy(
        update={"evals": eval_settings.evals.model_copy(update={"drift_min_questions": 12})}
    )
    store = open_store(settings)
    dq = _serving(
        load_settings(data_dir=tmp_path / "serving", evals={"database_url": store.url}),
        embedder,
        fixture_benchmark,
    )
    for q in load_benchmark(fixture_benchmark["squad"]).questions:
        dq.answering.ask(q.question, use_cache=False)
    dq.traffic.flush(10)
    same = drift_against_run(settings, store, stored_run.run, embedder=embedder)
    assert same.live_questions == 16
    assert not same.significant, same.verdict

    for q in off_topic_questions()[:40]:
        dq.answering.ask(q)
    dq.traffic.flush(10)
    shifted = drift_against_run(settings, store, stored_run.run, embedder=embedder)
    assert shifted.live_questions == 56
    assert shifted.significant, shifted.verdict
    assert shifted.scores["live_median"] < shifted.scores["reference_median"]
    assert shifted.not_found["live_rate"] > 0.5

    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(eval_settings.data_dir),
            "eval",
            "drift",
            "--run",
            stored_run.run.run_id,
            "--fail-on-drift",
        ],
        env={"DOCQA_EVALS__DRIFT_MIN_QUESTIONS": "12"},
    )
    assert result.exit_code == 1, result.output
    assert "significant drift" in result.output
    # Leave the module's other tests a store without live traffic.
    store.prune_traffic(datetime.now(UTC) + timedelta(seconds=1))
