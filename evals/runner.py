"""Run a benchmark through docqa and store what it measured.

The benchmark's documents go into an index of their own (an embedded Chroma and SQLite
under <evals work dir>/indexes/, never the serving index), kept between runs: unchanged
documents are skipped, removed ones deleted, so a second run with the same corpus and
settings ingests nothing. Every question is then asked through the answering service, the
code path of `/v1/ask` (same retrieval, same answerer, same per-stage timings), and searched
through the retriever (the code path of `/v1/search`) for the retrieval metrics.

The docqa under test is built by the caller (`open_docqa`, the composition root in
practice) from the isolated settings the runner derives, so evals never build stages
itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from docqa.domain import Answer, ScoredChunk
from docqa.errors import DocqaError
from docqa.settings import Settings, load_settings
from evals.benchmark import (
    Benchmark,
    BenchmarkError,
    BenchmarkQuestion,
    load_benchmark,
    materialize,
)
from evals.metrics import (
    contains_answer,
    exact_match,
    first_hit_rank,
    ndcg_at_k,
    strip_citations,
    supported_sentences,
    token_f1,
)
from evals.provenance import git_commit, run_config
from evals.results import RETRIEVAL_DEPTH, EvalRun, QuestionResult, summarize
from evals.store import EvalStore, eval_dir, open_store

if TYPE_CHECKING:
    import numpy as np

    from evals.report import ReportFiles
    from inference.answering import AnsweringService
    from ingestion.pipeline import Indexer
    from ingestion.records import RecordStore
    from retrieval.index import IndexCatalog
    from retrieval.protocols import Embedder, Retrieval, Retriever

# (stage, done, total): stages are "indexing" and "questions".
Progress = Callable[[str, int, int], None]


class DocqaUnderTest(Protocol):
    """The parts of a docqa a benchmark run drives (the composition root has them all)."""

    @property
    def records(self) -> RecordStore: ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def indexes(self) -> IndexCatalog: ...

    @property
    def retriever(self) -> Retriever: ...

    @property
    def answering(self) -> AnsweringService: ...

    def indexer(self) -> Indexer: ...


@dataclass
class RunOutcome:
    run: EvalRun
    results: list[QuestionResult]
    index_dir: Path
    ingested: dict[str, int] = field(default_factory=dict)
    report: ReportFiles | None = None


def index_dir_for(settings: Settings, bench: Benchmark, benchmark_path: Path) -> Path:
    """One folder per benchmark file and index-shaping settings: reused while they hold."""
    key = json.dumps(
        {
            "benchmark": str(benchmark_path.resolve()),
            "documents": str(bench.documents_dir.resolve()) if bench.documents_dir else None,
            "embedding": settings.embedding.model,
            "chunking": settings.chunking.model_dump(),
            "ingestion": settings.ingestion.model_dump(mode="json"),
        },
        sort_keys=True,
    )
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", bench.name).strip("-")[:40] or "benchmark"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return eval_dir(settings) / "indexes" / f"{slug}-{digest}"


def isolated_settings(settings: Settings, index_dir: Path, generator: str) -> Settings:
    """The serving settings, pointed at the benchmark's own embedded index, without the
    answer cache (a cached answer would measure the cache, not the answerer)."""
    data = settings.model_dump()
    data.update(
        data_dir=index_dir, database_url=None, chroma_url=None, redis_url=None, collection="bench"
    )
    data["answer"].update(generator=generator, cache_ttl_s=0)
    data["evals"]["record_traffic"] = "off"  # benchmark questions are not live traffic
    return load_settings(**data)


def run_benchmark(
    settings: Settings,
    benchmark_path: Path,
    *,
    open_docqa: Callable[[Settings], DocqaUnderTest],
    documents: Path | None = None,
    generator: str | None = None,
    out_dir: Path | None = None,
    limit: int | None = None,
    label: str | None = None,
    answer_questions: bool = True,
    set_baseline: bool = False,
    index_dir: Path | None = None,
    progress: Progress | None = None,
    write_report: bool = True,
) -> RunOutcome:
    """Ingest the benchmark's documents (if changed), ask every question, store the run and
    write its report.

    :param open_docqa: builds the docqa under test from the run's isolated settings.
    :raises BenchmarkError: the benchmark file or its documents are unusable.
    """
    from docqa.locking import writer_lock

    started = time.perf_counter()
    created = datetime.now(UTC)
    bench = load_benchmark(benchmark_path, documents)
    generator = generator or settings.answer.generator
    questions = bench.questions[:limit] if limit else bench.questions
    index_dir = index_dir or index_dir_for(settings, bench, benchmark_path)
    iso = isolated_settings(settings, index_dir, generator)
    dq = open_docqa(iso)
    report_progress = progress or (lambda stage, done, total: None)

    with writer_lock(iso, holder="docqa eval run"):
        files, gold_sources = _corpus(bench, benchmark_path, index_dir)
        ingested, warnings = _sync_index(dq, files, report_progress)
        dq.retriever.retrieve("warm-up", 1)  # loads the BM25 index: not part of any timing
        results, embeddings = [], []
        for n, question in enumerate(questions, start=1):
            gold = gold_sources.get(question.document) if question.document else None
            result, embedding = _evaluate(dq, question, gold, answer_questions)
            results.append(result)
            embeddings.append(embedding)
            report_progress("questions", n, len(questions))
        index = dq.indexes.current()
        index_version = index.version()
        config = run_config(iso, generator=generator, embedding_model_id=dq.embedder.model_id)
        config["index"] = {
            "version": index_version,
            "documents": dq.records.count(),
            "chunks": index.vectors.count(),
            "folder": str(index_dir),
        }
    config["serving_index"] = _serving_collection(settings)
    config["benchmark"] = {
        "name": bench.name,
        "questions": len(bench.questions),
        "asked": len(questions),
        "limit": limit,
        "answers": answer_questions,
    }
    errors = sum(r.error is not None for r in results)
    if errors:
        warnings.append(f"{errors} questions could not be answered (see their `error`)")

    run = EvalRun(
        run_id=f"{created:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}",
        created_at=created,
        benchmark=bench.name,
        benchmark_path=str(benchmark_path.resolve()),
        benchmark_sha256=bench.sha256,
        generator=generator if answer_questions else "none",
        questions=len(results),
        metrics=summarize(results),
        config=config,
        git_commit=git_commit(),
        index_version=index_version,
        duration_s=round(time.perf_counter() - started, 1),
        label=label,
        warnings=warnings,
    )
    store = open_store(settings)
    store.save_run(run, results)
    if set_baseline:
        store.set_baseline(run.run_id)
        run.is_baseline = True
    outcome = RunOutcome(run, results, index_dir, ingested)
    run.drift = _drift_snapshot(settings, store, run, results, embeddings, dq.embedder)
    if write_report:
        from evals.report import write_run_report

        target = out_dir or eval_dir(settings) / "reports" / run.run_id
        outcome.report = write_run_report(store, run, target, settings=settings, results=results)
        run.report_dir = str(target.resolve())
    store.update_run(run.run_id, report_dir=run.report_dir, drift=run.drift)
    return outcome


def _corpus(
    bench: Benchmark, benchmark_path: Path, index_dir: Path
) -> tuple[list[Path], dict[str, str]]:
    """The files to index, and each gold document's source as the index records it."""
    from ingestion.pipeline import iter_files, source_for

    if bench.documents:
        by_id = materialize(bench, index_dir / "documents")
        return list(by_id.values()), {doc: source_for(p) for doc, p in by_id.items()}
    assert bench.documents_dir is not None
    files = list(iter_files([bench.documents_dir]))
    if not files:
        raise BenchmarkError(f"documents folder {bench.documents_dir} holds no files")
    names: dict[str, str] = {}
    for path in files:
        source = source_for(path)
        for key in (path.relative_to(bench.documents_dir).as_posix(), path.name, path.stem):
            names.setdefault(key, source)
    for q in bench.questions:
        if q.document and q.document not in names:
            raise BenchmarkError(
                f"{benchmark_path}: question {q.qid} names document {q.document!r}, which is "
                f"not in {bench.documents_dir} (give its file name, relative path or stem)"
            )
    return files, names


def _sync_index(
    dq: DocqaUnderTest, files: Sequence[Path], progress: Progress
) -> tuple[dict[str, int], list[str]]:
    from ingestion.pipeline import source_for

    indexer = dq.indexer()
    indexer.repair()
    wanted = {source_for(p) for p in files}
    removed = 0
    for record in dq.records.list():
        if record.source not in wanted:
            indexer.delete_document(record.document_id)
            removed += 1
    done = 0

    def advance(_: object) -> None:
        nonlocal done
        done += 1
        progress("indexing", done, len(files))

    results = indexer.ingest_paths(files, on_result=advance)
    counts = {"removed": removed}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    warnings = [
        f"document {Path(r.source).name} could not be indexed: {r.error}"
        for r in results
        if r.outcome.value == "failed"
    ]
    return counts, warnings


def judge_hits(
    hits: Sequence[ScoredChunk], gold_source: str | None, answers: Sequence[str]
) -> tuple[list[bool], list[bool]]:
    """Per hit: is it from the gold document (any document when there is none), and is it
    relevant (from the gold document and holding a gold answer)."""
    in_gold = [gold_source is None or h.chunk.source == gold_source for h in hits]
    relevant = [
        g and contains_answer(h.chunk.text, answers) for g, h in zip(in_gold, hits, strict=True)
    ]
    return in_gold, relevant


def _evaluate(
    dq: DocqaUnderTest, q: BenchmarkQuestion, gold_source: str | None, answer_questions: bool
) -> tuple[QuestionResult, np.ndarray]:
    """The question's result, and its embedding (the drift reference reuses it)."""
    retrieval = dq.retriever.retrieve(q.question, RETRIEVAL_DEPTH)
    in_gold, relevant = judge_hits(retrieval.hits, gold_source, q.answers)
    result = QuestionResult(
        qid=q.qid,
        question=q.question,
        answers=list(q.answers),
        document=q.document,
        hit_rank=first_hit_rank(relevant),
        doc_rank=first_hit_rank(in_gold) if gold_source else None,
        ndcg=round(ndcg_at_k(relevant, RETRIEVAL_DEPTH), 4),
        nearest=round(float(retrieval.nearest), 4),
        top_scores=[round(float(h.relevance or 0.0), 4) for h in retrieval.hits[:5]],
        unanswerable=q.unanswerable,
    )
    if not answer_questions:
        return result, retrieval.query_embedding
    result.answered = True
    try:
        answer = dq.answering.ask(q.question, use_cache=False)
    except DocqaError as exc:
        result.error = exc.message
        return result, retrieval.query_embedding
    if q.unanswerable:
        result.answer, result.found = answer.text, answer.found
        result.timings_ms = dict(answer.timings_ms)
        return result, retrieval.query_embedding
    _score_answer(dq, result, answer, retrieval, gold_source)
    return result, retrieval.query_embedding


def _score_answer(
    dq: DocqaUnderTest,
    result: QuestionResult,
    answer: Answer,
    retrieval: Retrieval,
    gold_source: str | None,
) -> None:
    result.answer = answer.text
    result.found = answer.found
    result.timings_ms = dict(answer.timings_ms)
    result.usage = answer.usage
    if not answer.found:
        return
    text = strip_citations(answer.text)
    result.exact_match = exact_match(text, result.answers)
    result.f1 = round(token_f1(text, result.answers), 4)
    result.contains = contains_answer(text, result.answers)
    # Citations quote their chunk; support is judged against the whole chunk.
    chunks = {h.chunk.chunk_id: h.chunk for h in retrieval.hits}
    missing = [c.chunk_id for c in answer.citations if c.chunk_id not in chunks]
    if missing:
        chunks.update({c.chunk_id: c for c in dq.indexes.current().vectors.get(missing)})
    cited = [chunks[c.chunk_id].text if c.chunk_id in chunks else c.text for c in answer.citations]
    result.supported_sentences, result.sentences = supported_sentences(answer.text, cited)
    result.citations = len(answer.citations)
    result.correct_citations = sum(
        (c.source == gold_source) if gold_source else contains_answer(text_, result.answers)
        for c, text_ in zip(answer.citations, cited, strict=True)
    )


def _serving_collection(settings: Settings) -> str | None:
    """The collection the serving alias points at now, when the record store exists."""
    if settings.database_url is None and not (settings.data_dir / "docqa.sqlite").exists():
        return None
    try:
        from retrieval.aliases import AliasStore

        return AliasStore(settings.resolved_database_url).get(settings.collection)
    except Exception:  # noqa: BLE001 - provenance only; a run must not fail for it
        return None


def _drift_snapshot(
    settings: Settings,
    store: EvalStore,
    run: EvalRun,
    results: list[QuestionResult],
    embeddings: list[np.ndarray],
    embedder: Embedder,
) -> dict[str, Any] | None:
    """Drift of the recent live questions against this run's questions, when there are any."""
    from evals.drift import drift_against_run

    report = drift_against_run(
        settings, store, run, results, embedder=embedder, reference_embeddings=embeddings
    )
    return report.to_dict() if report.live_questions else None
