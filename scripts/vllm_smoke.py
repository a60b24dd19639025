"""Ask benchmark questions through docqa with the vLLM generator and measure the LLM path:
time to first token, decode speed and the share of answers with valid citations.

`scripts/vllm_smoke.sh` starts `vllm serve` on a GPU machine and runs this against it;
the test suite runs it against a vLLM wire-format fake. Prints a table and, with --json,
writes the figures to a file.

    python scripts/vllm_smoke.py --vllm-url http://127.0.0.1:8001 \\
        --benchmark ../shared/benchmarks/covidqa-dev.json --documents 8 --questions 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Outcome:
    question: str
    first_delta_s: float | None
    total_s: float
    completion_tokens: int | None
    decode_s: float | None
    found: bool
    valid_citations: bool
    degraded: bool
    warnings: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--vllm-url", action="append", required=True, help="vLLM base URL (repeat)")
    p.add_argument("--benchmark", type=Path, required=True, help="SQuAD-style benchmark JSON")
    p.add_argument("--documents", type=int, default=8, help="articles to index (0: all)")
    p.add_argument("--questions", type=int, default=40, help="questions to ask (0: all)")
    p.add_argument("--concurrency", type=int, default=1, help="questions in flight at once")
    p.add_argument("--model", default=None, help="served model name (default: the first)")
    p.add_argument("--max-answer-tokens", type=int, default=256)
    p.add_argument("--deadline-s", type=float, default=120.0)
    p.add_argument("--data-dir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--device", default="cpu", help="embedding device (cuda on a GPU machine)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p.parse_args(argv)


async def ask_one(docqa: Any, question: str) -> Outcome:
    start = time.perf_counter()
    first: float | None = None
    final = None
    async for event in docqa.ask_stream(question, use_cache=False):
        if event.kind == "delta" and first is None:
            first = time.perf_counter()
        elif event.kind == "final":
            final = event.answer
    end = time.perf_counter()
    assert final is not None
    tokens = (final.usage or {}).get("completion_tokens")
    first_token_ms = final.timings_ms.get("first_token")
    generate_ms = final.timings_ms.get("generate")
    decode_s = None
    if first_token_ms is not None and generate_ms is not None:
        decode_s = max(0.0, (generate_ms - first_token_ms) / 1000)
    return Outcome(
        question=question,
        first_delta_s=None if first is None else first - start,
        total_s=end - start,
        completion_tokens=tokens,
        decode_s=decode_s,
        found=final.found,
        valid_citations=final.found and bool(final.citations),
        degraded=final.degraded,
        warnings=final.warnings,
    )


async def ask_all(docqa: Any, questions: list[str], concurrency: int) -> list[Outcome]:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def guarded(q: str) -> Outcome:
        async with gate:
            return await ask_one(docqa, q)

    return list(await asyncio.gather(*(guarded(q) for q in questions)))


def summarise(outcomes: list[Outcome], wall_s: float) -> dict[str, Any]:
    llm = [o for o in outcomes if not o.degraded and o.first_delta_s is not None]
    ttft = sorted(o.first_delta_s for o in llm if o.first_delta_s is not None)
    decode = [
        o.completion_tokens / o.decode_s
        for o in llm
        if o.completion_tokens and o.decode_s and o.completion_tokens > 1
    ]
    total_tokens = sum(o.completion_tokens or 0 for o in llm)
    found = [o for o in outcomes if o.found]

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {
        "questions": len(outcomes),
        "answered_by_llm": len(llm),
        "degraded": sum(o.degraded for o in outcomes),
        "found": len(found),
        "valid_citation_share": round(sum(o.valid_citations for o in found) / len(found), 3)
        if found
        else None,
        "ttft_s_p50": pct(ttft, 0.5),
        "ttft_s_p95": pct(ttft, 0.95),
        "decode_tokens_per_s_mean": round(statistics.fmean(decode), 1) if decode else None,
        "completion_tokens": total_tokens,
        "aggregate_tokens_per_s": round(total_tokens / wall_s, 1) if wall_s > 0 else None,
        "wall_s": round(wall_s, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import docqa  # noqa: F401 - sets the offline switches before any model library loads
    from app import Docqa
    from docqa.settings import load_settings
    from evals.benchmark import load_benchmark, materialize

    bench = load_benchmark(args.benchmark)
    documents = bench.documents[: args.documents] if args.documents else bench.documents
    kept = {d.doc_id for d in documents}
    questions = [q.question for q in bench.questions if q.document in kept]
    questions = questions[: args.questions] if args.questions else questions
    if not questions:
        raise SystemExit(
            f"{args.benchmark}: no questions about the first {len(documents)} articles"
        )

    with tempfile.TemporaryDirectory(prefix="docqa-vllm-smoke-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        settings = load_settings(
            data_dir=data_dir,
            embedding={"device": args.device},
            answer={"generator": "vllm", "cache_ttl_s": 0},
            vllm={
                "urls": args.vllm_url,
                "model": args.model,
                "max_answer_tokens": args.max_answer_tokens,
                "deadline_s": args.deadline_s,
            },
        )
        dq = Docqa(settings)
        bench.documents = documents
        files = materialize(bench, Path(tmp) / "documents")
        t0 = time.perf_counter()
        results = dq.indexer().ingest_paths(list(files.values()))
        failed = [r for r in results if r.error]
        print(
            f"indexed {len(results) - len(failed)} of {len(results)} articles "
            f"in {time.perf_counter() - t0:.1f} s; asking {len(questions)} questions "
            f"({args.concurrency} at a time) through {', '.join(args.vllm_url)}",
            flush=True,
        )
        start = time.perf_counter()
        outcomes = asyncio.run(ask_all(dq.answering, questions, args.concurrency))
        summary = summarise(outcomes, time.perf_counter() - start)

    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    if summary["degraded"]:
        reasons = {w for o in outcomes if o.degraded for w in o.warnings}
        print("degraded answers:", "; ".join(sorted(reasons))[:1000])
    if args.json:
        args.json.write_text(
            json.dumps({"summary": summary, "outcomes": [asdict(o) for o in outcomes]}, indent=2)
        )
    return summary


if __name__ == "__main__":
    main()
