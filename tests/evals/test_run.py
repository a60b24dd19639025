"""A benchmark run end to end: its own index, every question through Docqa.ask, stored
with its configuration, a report people can open; compare and gate over stored runs."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from docqa.settings import Settings
from evals.compare import compare_runs, gate
from evals.results import summarize
from evals.runner import run_benchmark
from evals.store import open_store
from tests.evals.conftest import docqa_with


def test_run_measures_retrieval_and_answers(stored_run: Any, eval_settings: Settings) -> None:
    run = stored_run.run
    m = run.metrics
    assert run.questions == 16
    # Four short documents with one fact per sentence: retrieval and answers are easy.
    assert m["hit@5"] >= 0.9 and m["doc_recall@10"] == 1.0
    assert m["answer_contains"] >= 0.6 and m["f1"] > 0.2
    assert m["groundedness"] >= 0.9 and m["citation_precision"] >= 0.8
    assert m["not_found_rate"] <= 0.1
    for key in (
        "hit@1",
        "hit@10",
        "mrr@10",
        "ndcg@10",
        "exact_match",
        "total_ms_p95",
        "retrieve_ms_p50",
        "generate_ms_p50",
    ):
        assert key in m
    assert "prompt_tokens_mean" not in m  # the extractive answerer uses no model tokens
    assert stored_run.ingested.get("added") == 4


def test_run_is_stored_with_its_configuration(stored_run: Any, eval_settings: Settings) -> None:
    store = open_store(eval_settings)
    run = store.get_run(stored_run.run.run_id)
    assert run.benchmark == "fixture" and len(run.benchmark_sha256) == 64
    assert run.git_commit and run.index_version
    config = run.config
    assert config["models"]["embedding"]
    assert config["chunking"]["chunk_tokens"] == eval_settings.chunking.chunk_tokens
    assert config["retrieval"]["top_k"] == eval_settings.retrieval.top_k
    assert config["answer"]["generator"] == "extractive"
    assert "prompt_version" in config
    assert config["index"]["documents"] == 4
    results = store.results(run.run_id)
    assert [r.qid for r in results] == [f"q{n}" for n in range(1, 17)]
    assert all(r.answered and r.timings_ms.get("total") for r in results)


def test_benchmark_index_is_apart_from_the_serving_one(
    stored_run: Any, eval_settings: Settings
) -> None:
    index_dir = stored_run.index_dir.resolve()
    assert index_dir.is_relative_to((eval_settings.data_dir / "evals").resolve())
    # Nothing was written to the serving index: its record store has no documents.
    from ingestion.records import RecordStore

    assert RecordStore(eval_settings.resolved_database_url).count() == 0


def test_report_is_self_contained(stored_run: Any) -> None:
    report = stored_run.report
    html = report.html.read_text(encoding="utf-8")
    assert "docqa evaluation: fixture" in html
    assert "data:image/png;base64," in html
    # Nothing is fetched from elsewhere: no external scripts, styles or images.
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert "<script" not in html
    md = report.markdown.read_text(encoding="utf-8")
    assert "| hit@5 |" in md and "plots/latency.png" in md
    for name in ("baseline", "latency", "scores"):
        assert report.plots[name].read_bytes()[:4] == b"\x89PNG"


def test_second_run_reuses_the_index_and_is_compared(
    stored_run: Any, eval_settings: Settings, fixture_benchmark: dict[str, Path], embedder: Any
) -> None:
    again = run_benchmark(
        eval_settings, fixture_benchmark["squad"], open_docqa=docqa_with(embedder), limit=6
    )
    assert again.ingested == {"removed": 0, "unchanged": 4}
    assert again.index_dir == stored_run.index_dir
    html = again.report.html.read_text(encoding="utf-8")
    assert stored_run.run.run_id in html  # held against the previous run
    assert "Gate passed" in html
    open_store(eval_settings).delete_run(again.run.run_id)


def _degraded_copy(store: Any, run: Any, results: list[Any], broken: int) -> Any:
    """A later run in which the first `broken` passing questions lost their answer."""
    worse = [dataclasses.replace(r) for r in results]
    passing = [r for r in worse if r.retrieval_pass and r.contains]
    for r in passing[:broken]:
        r.hit_rank = r.doc_rank = None
        r.contains, r.f1, r.exact_match, r.ndcg = False, 0.0, 0.0, 0.0
    copy = dataclasses.replace(
        run,
        run_id=run.run_id + "-worse",
        created_at=run.created_at + timedelta(minutes=5),
        metrics=summarize(worse),
        is_baseline=False,
    )
    store.save_run(copy, worse)
    return copy


def test_gate_fails_on_a_planted_regression_and_passes_otherwise(
    stored_run: Any, eval_settings: Settings
) -> None:
    store = open_store(eval_settings)
    base, results = stored_run.run, stored_run.results
    worse = _degraded_copy(store, base, results, broken=3)
    try:
        same = compare_runs(base, results, base, results)
        assert gate(same, max_drop=0.02, metrics=eval_settings.evals.gate_metrics).passed

        comparison = compare_runs(base, results, worse, store.results(worse.run_id))
        result = gate(comparison, max_drop=0.02, metrics=eval_settings.evals.gate_metrics)
        assert not result.passed
        assert {"hit@5", "answer_contains"} <= {m.name for m in result.failures}
        assert len(comparison.newly_failing) == 3
        assert {c.check for c in comparison.newly_failing} == {"retrieval, answer"}
        # A drop inside the tolerance passes.
        assert gate(comparison, max_drop=0.5, metrics=["hit@5"]).passed

        cli = CliRunner()
        data = ["--data-dir", str(eval_settings.data_dir)]

        def gate_cli(run_id: str, max_drop: str) -> Any:
            args = ["eval", "gate", "--baseline", base.run_id, "--run", run_id]
            return cli.invoke(app, [*data, *args, "--max-drop", max_drop])

        failed = gate_cli(worse.run_id, "0.02")
        assert failed.exit_code == 1, failed.output
        assert "gate FAIL" in failed.output and "newly fail" in failed.output
        passed = gate_cli(base.run_id + "-worse", "0.5")
        assert passed.exit_code == 0, passed.output
        compared = cli.invoke(app, [*data, "eval", "compare", base.run_id, worse.run_id, "--json"])
        assert compared.exit_code == 0, compared.output
        assert len(json.loads(compared.output)["newly_failing"]) >= 3
    finally:
        store.delete_run(worse.run_id)


def test_cli_list_baseline_and_bad_references(stored_run: Any, eval_settings: Settings) -> None:
    cli = CliRunner()
    data = ["--data-dir", str(eval_settings.data_dir)]
    listed = cli.invoke(app, [*data, "eval", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert stored_run.run.run_id in {r["run_id"] for r in json.loads(listed.output)}
    pinned = cli.invoke(app, [*data, "eval", "baseline", stored_run.run.run_id[:12]])
    assert pinned.exit_code == 0 and "is now the baseline" in pinned.output
    missing = cli.invoke(app, [*data, "eval", "compare", "nope", "latest"])
    assert missing.exit_code == 2 and "no eval run 'nope'" in missing.output
    unknown = cli.invoke(app, [*data, "eval", "gate", "--metric", "accuracy"])
    assert unknown.exit_code == 2 and "unknown metric" in unknown.output


def test_cli_run_on_a_jsonl_benchmark(tmp_path: Path, fixture_benchmark: dict[str, Path]) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "data"),
            "eval",
            "run",
            "--benchmark",
            str(fixture_benchmark["jsonl"]),
            "--documents",
            str(fixture_benchmark["documents"]),
            "--limit",
            "4",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 questions" in result.output and "hit@5" in result.output
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_cli_run_on_a_malformed_benchmark_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a?", "answers": ["x"]}\n{"question": \n', encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "data"),
            "eval",
            "run",
            "--benchmark",
            str(bad),
            "--documents",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert f"{bad}:2: not valid JSON" in result.output


def test_jsonl_question_naming_an_absent_document(
    tmp_path: Path, fixture_benchmark: dict[str, Path], embedder: Any
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x1", "question": "a?", "answers": ["x"], "document": "nope.txt"}\n')
    from docqa.settings import load_settings
    from evals.benchmark import BenchmarkError

    with pytest.raises(BenchmarkError, match=r"question x1 names document 'nope\.txt'"):
        run_benchmark(
            load_settings(data_dir=tmp_path / "data"),
            bad,
            documents=fixture_benchmark["documents"],
            open_docqa=docqa_with(embedder),
        )


@pytest.mark.slow
def test_covidqa_slice(tmp_path: Path, embedder: Any) -> None:
    """Five of the COVID-QA articles, a few questions each: real scientific text."""
    from tests.conftest import shared_path

    source = shared_path("benchmarks", "covidqa-dev.json")
    data = json.loads(source.read_text(encoding="utf-8"))
    articles = sorted(data["data"], key=lambda a: len(a["paragraphs"][0]["context"]))[:5]
    for a in articles:
        a["paragraphs"][0]["qas"] = a["paragraphs"][0]["qas"][:3]
    path = tmp_path / "covidqa-slice.json"
    path.write_text(json.dumps({"data": articles}), encoding="utf-8")
    from docqa.settings import load_settings

    outcome = run_benchmark(
        load_settings(data_dir=tmp_path / "data"), path, open_docqa=docqa_with(embedder)
    )
    m = outcome.run.metrics
    assert outcome.run.questions == sum(len(a["paragraphs"][0]["qas"]) for a in articles)
    assert m["doc_recall@10"] >= 0.8
    assert m["hit@10"] >= 0.5
    assert m["groundedness"] >= 0.8
    assert outcome.report.html.is_file()


def test_vllm_run_records_tokens_and_prompt_version(
    tmp_path: Path, fixture_benchmark: dict[str, Path], embedder: Any
) -> None:
    """--generator vllm against a stand-in vLLM server speaking its wire format."""
    from docqa.settings import load_settings
    from tests.fakes.fake_vllm import Behaviour, FakeVLLM

    with FakeVLLM(Behaviour(answer="The Zorvath bridge was completed in 1873 [1].")) as fake:
        settings = load_settings(
            data_dir=tmp_path / "data", vllm={"urls": [fake.url], "model": "fake/llm-7b"}
        )
        outcome = run_benchmark(
            settings,
            fixture_benchmark["squad"],
            generator="vllm",
            limit=3,
            open_docqa=docqa_with(embedder),
        )
        assert len(fake.chats) == 3
    run = outcome.run
    assert run.generator == "vllm"
    assert run.metrics["prompt_tokens_mean"] > 0 and run.metrics["completion_tokens_mean"] > 0
    assert run.config["models"]["llm"] == "fake/llm-7b"
    assert run.config["prompt_version"]
    assert outcome.results[0].contains  # q1 asks when the bridge was completed
