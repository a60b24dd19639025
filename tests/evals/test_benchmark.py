"""Reading benchmark files, and the errors a malformed one gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.benchmark import BenchmarkError, load_benchmark


def test_squad_benchmark_has_one_document_per_article(fixture_benchmark: dict[str, Path]) -> None:
    bench = load_benchmark(fixture_benchmark["squad"])
    assert len(bench.documents) == 4
    assert len(bench.questions) == 16
    q = bench.questions[0]
    assert q.qid == "q1" and q.document == "bridges" and q.answers == ("1873",)
    assert len(bench.sha256) == 64


def test_jsonl_benchmark_takes_documents_from_a_folder(fixture_benchmark: dict[str, Path]) -> None:
    bench = load_benchmark(fixture_benchmark["jsonl"], fixture_benchmark["documents"])
    assert len(bench.questions) == 16
    assert bench.documents_dir == fixture_benchmark["documents"]
    assert bench.questions[4].document == "bees.txt"


def test_covidqa_loads(shared_covidqa: Path) -> None:
    bench = load_benchmark(shared_covidqa)
    assert len(bench.documents) == 48
    assert len(bench.questions) == 635


@pytest.fixture
def shared_covidqa() -> Path:
    from tests.conftest import shared_path

    return shared_path("benchmarks", "covidqa-dev.json")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ('{"data": [', "line 1, column 11"),
        ('{"version": 1}', "'data' list"),
        ('{"data": [{"paragraphs": []}]}', "data[0].paragraphs"),
        ('{"data": [{"paragraphs": [{"qas": []}]}]}', "data[0].paragraphs[0].context"),
        (
            json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": 1}]}]}]}),
            "data[0].paragraphs[0].qas[0].question",
        ),
        (
            json.dumps(
                {
                    "data": [
                        {
                            "paragraphs": [
                                {
                                    "context": "c",
                                    "qas": [{"id": 1, "question": "q?", "answers": []}],
                                }
                            ]
                        }
                    ]
                }
            ),
            "data[0].paragraphs[0].qas[0].answers",
        ),
    ],
)
def test_malformed_squad_names_the_json_path(tmp_path: Path, content: str, fault: str) -> None:
    path = _write(tmp_path, "bench.json", content)
    with pytest.raises(BenchmarkError) as exc:
        load_benchmark(path)
    assert fault in exc.value.message
    assert str(path) in exc.value.message


@pytest.mark.parametrize(
    ("lines", "fault"),
    [
        (
            ['{"question": "a?", "answers": ["x"]}', '{"question": "b?", "answers": '],
            ":2: not valid JSON",
        ),
        (
            ['{"question": "a?", "answers": ["x"]}', "", '{"answers": ["x"]}'],
            ":3: needs a non-empty 'question'",
        ),
        (['{"question": "a?"}'], ":1: needs 'answers'"),
        (['["a list"]'], ":1: needs a non-empty 'question'"),
    ],
)
def test_malformed_jsonl_names_the_line(tmp_path: Path, lines: list[str], fault: str) -> None:
    path = _write(tmp_path, "bench.jsonl", "\n".join(lines))
    with pytest.raises(BenchmarkError) as exc:
        load_benchmark(path, tmp_path)
    assert fault in exc.value.message


def test_jsonl_without_documents_folder_says_what_to_give(tmp_path: Path) -> None:
    path = _write(tmp_path, "bench.jsonl", '{"question": "a?", "answers": ["x"]}')
    with pytest.raises(BenchmarkError, match="--documents"):
        load_benchmark(path)
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_benchmark(path, tmp_path / "missing")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="cannot read"):
        load_benchmark(tmp_path / "nope.json")
    with pytest.raises(BenchmarkError, match="no questions"):
        load_benchmark(_write(tmp_path, "empty.jsonl", "\n\n"), tmp_path)


def test_jsonl_unanswerable_rows_need_no_answers(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bench.jsonl",
        '{"question": "a?", "answers": ["x"], "document": "d.txt"}\n'
        '{"id": "u-1", "question": "b?", "answers": [], "unanswerable": true}',
    )
    bench = load_benchmark(path, tmp_path)
    answerable, unanswerable = bench.questions
    assert not answerable.unanswerable and answerable.answers == ("x",)
    assert unanswerable.unanswerable and unanswerable.answers == ()
    assert unanswerable.document is None and unanswerable.qid == "u-1"
    # Empty answers without the flag is still a mistake.
    with pytest.raises(BenchmarkError, match="unanswerable"):
        load_benchmark(_write(tmp_path, "bad.jsonl", '{"question": "c?", "answers": []}'), tmp_path)
