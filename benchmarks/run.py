"""`make bench`: speed, memory, retrieval and answer quality on every question set, measured
(never asserted in tests).

    .venv/bin/python -m benchmarks.run [--quick]

Writes benchmarks/results/bench-<timestamp>.json and prints a summary. Uses
../shared/corpus (formats, large) and ../shared/benchmarks/covidqa-dev.json when present.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ingest(folder: Path, label: str) -> dict[str, object]:
    import docqa  # noqa: F401
    from app import Docqa
    from docqa.settings import load_settings
    from ingestion.pipeline import iter_files

    files = list(iter_files([folder]))
    with tempfile.TemporaryDirectory() as tmp:
        dq = Docqa(load_settings(data_dir=Path(tmp)))
        indexer = dq.indexer()
        t0 = time.perf_counter()
        results = indexer.ingest_paths(files)
        seconds = time.perf_counter() - t0
    chunks = sum(r.chunks for r in results)
    size_mb = sum(f.stat().st_size for f in files) / 2**20
    return {
        "corpus": label,
        "files": len(files),
        "failed": sum(r.outcome.value == "failed" for r in results),
        "chunks": chunks,
        "seconds": round(seconds, 1),
        "chunks_per_s": round(chunks / seconds, 1),
        "mb_per_min": round(size_mb / seconds * 60, 2),
    }


def bench_ask(n: int) -> dict[str, object]:
    """Answer latency on the COVID-QA index built by benchmarks.covidqa_retrieval."""
    import docqa  # noqa: F401
    from app import Docqa
    from docqa.settings import load_settings
    from evals.benchmark import load_benchmark

    data = RESULTS / "covidqa"
    if not (data / "docqa.sqlite").exists():
        return {"skipped": "run benchmarks.covidqa_retrieval first"}
    dq = Docqa(load_settings(data_dir=data, answer={"cache_ttl_s": 0}))
    questions = load_benchmark(SHARED / "benchmarks" / "covidqa-dev.json").questions[:n]
    dq.answering.ask(questions[0].question)  # warm up: model, BM25 index
    totals, retrieve, generate = [], [], []
    for q in questions:
        a = dq.answering.ask(q.question)
        totals.append(a.timings_ms["total"])
        retrieve.append(a.timings_ms["retrieve"])
        generate.append(a.timings_ms["generate"])
    return {
        "questions": len(questions),
        **{
            f"{name}_ms_p{p}": round(float(np.percentile(v, p)), 1)
            for name, v in (("total", totals), ("retrieve", retrieve), ("generate", generate))
            for p in (50, 95)
        },
    }


def bench_quality(quick: bool) -> list[dict[str, object]]:
    """Retrieval and answer quality on every question set, docqa as configured beside docqa
    as it was before issue 13 (benchmarks.quality; --quick: COVID-QA only, no large files)."""
    from benchmarks import quality

    argv = ["--variants", "before,configured", "--answer", "before,configured"]
    if quick:
        argv += ["--sets", "covidqa-dev"]
    return list(quality.main(argv)["results"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the 619-page PDF")
    args = ap.parse_args()
    report: dict[str, object] = {"when": datetime.now(UTC).isoformat(timespec="seconds")}
    ingest = []
    if (SHARED / "corpus" / "formats").exists():
        ingest.append(bench_ingest(SHARED / "corpus" / "formats", "formats (30 files)"))
    if not args.quick and (SHARED / "corpus" / "large").exists():
        with tempfile.TemporaryDirectory() as tmp:
            pdf = Path(tmp) / "DA-619p.pdf"
            pdf.symlink_to(SHARED / "corpus" / "large" / "DA-619p.pdf")
            ingest.append(bench_ingest(Path(tmp), "DA-619p.pdf (619 pages)"))
    report["ingest"] = ingest
    if (SHARED / "benchmarks" / "covidqa-dev.json").exists():
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.covidqa_retrieval"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        report["retrieval_covidqa"] = json.loads(out.stdout[out.stdout.index("{") :])
        report["ask_latency"] = bench_ask(100)
    report["quality"] = bench_quality(args.quick)
    report["peak_rss_mb"] = round(_peak_rss_mb(), 0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    target.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written to {target}")


if __name__ == "__main__":
    main()
