"""The answer cache: how often it answers, how much time a hit saves, and how often the
semantic layer would give a question another question's answer.

Two parts:

1. **Traffic** over a real index (the first articles of ../shared/benchmarks/covidqa-dev.json,
   ingested as .txt; skipped when absent): each question is asked as written (a miss), then
   again as written, then in capitals with extra spaces and no question mark, then reworded
   in form ("Can you tell me ..."). The extractive answerer, default settings; the semantic
   layer off (the default) and on, in process and in Redis when one is reachable
   (DOCQA_BENCH_REDIS_URL, default redis://127.0.0.1:6379/12).
2. **Decisions** of the semantic layer on benchmarks/cache_pairs.jsonl, pairs built for it:
   paraphrases (`form`: the same words reworded; `reworded`: other words) that should reuse
   an answer, and near misses of the same topic that must not (`substitution`, `order`,
   `negation`, `number`, `modal`). The answer to `a` is cached, then `b` is asked. Shown
   with docqa's word check and with the embedding's cosine alone, at the configured
   threshold and across thresholds.

    .venv/bin/python -m benchmarks.cache [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DOCQA_SHARED_DIR", ROOT.parent / "shared"))
PAIRS = ROOT / "benchmarks" / "cache_pairs.jsonl"
PARAPHRASE_KINDS = ("form", "reworded")
NEAR_MISS_KINDS = ("substitution", "order", "negation", "number", "modal")
SWEEP = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _p(values: list[float], q: int) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def _redis_url() -> str | None:
    url = os.environ.get("DOCQA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=0.5):
            return url
    except OSError:
        return None


# -- part 1: traffic over a real index ---------------------------------------------------


def variants(question: str) -> dict[str, str]:
    """The forms each question is asked in, after the first (a miss)."""
    q = question.strip()
    bare = q.rstrip("?").strip()
    return {
        "again": q,
        "capitals": "  " + "  ".join(bare.upper().split()) + " ",  # extra spaces, no "?"
        "reworded": f"Can you tell me {bare[0].lower()}{bare[1:]}?",
    }


def traffic(quick: bool, embedder: Any) -> dict[str, Any] | None:
    covidqa = SHARED / "benchmarks" / "covidqa-dev.json"
    if not covidqa.exists():
        return None
    from app import Docqa
    from docqa.settings import load_settings
    from evals.benchmark import load_benchmark, materialize
    from inference.answering import AnsweringService
    from inference.cache import LocalCache, RedisCache

    bench = load_benchmark(covidqa)
    articles = bench.documents[: 3 if quick else 10]
    ids = {d.doc_id for d in articles}
    questions = [q.question for q in bench.questions if q.document in ids][: 20 if quick else 80]
    redis_url = _redis_url()
    results: dict[str, Any] = {"articles": len(articles), "questions": len(questions)}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp) / "data")
        dq = Docqa(settings, embedder=embedder)
        bench.documents = articles
        files = materialize(bench, Path(tmp) / "docs")
        t0 = time.perf_counter()
        for path in files.values():
            dq.indexer().ingest_file(path)
        results["ingest_s"] = round(time.perf_counter() - t0, 1)
        dq.retriever.retrieve("warm up")
        backends: list[tuple[str, Any]] = [("in process", LocalCache)]
        if redis_url is not None:
            backends.append(("Redis", lambda: RedisCache(redis_url)))
        runs = []
        for backend, make_store in backends:
            for semantic in (False, True):
                # Entries expire soon after the run: nothing lingers in a shared Redis.
                answer_settings = settings.answer.model_copy(
                    update={"semantic_cache": semantic, "cache_ttl_s": 600}
                )
                service = AnsweringService(
                    retriever=dq.retriever,
                    generator=dq.generator,
                    cache=make_store(),
                    settings=answer_settings,
                    default_top_k=settings.retrieval.top_k,
                    cache_scope={"bench": time.time_ns()},  # never another run's entries
                    embedder=embedder,
                )
                runs.append(ask_traffic(service, questions, backend, semantic))
        results["runs"] = runs
    return results


def ask_traffic(service: Any, questions: list[str], backend: str, semantic: bool) -> dict[str, Any]:
    timings: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[bool]] = defaultdict(list)
    for question in questions:
        first = service.ask(question)
        timings["miss"].append(first.timings_ms["total"])
        for form, asked in variants(question).items():
            t0 = time.perf_counter()
            answer = service.ask(asked)
            elapsed = _ms(time.perf_counter() - t0)
            hits[form].append(answer.cached)
            timings[f"{form} hit" if answer.cached else f"{form} miss"].append(elapsed)
    asks = len(questions) * (1 + len(variants("q?")))
    served = sum(sum(v) for v in hits.values())
    return {
        "backend": backend,
        "semantic": semantic,
        "hit_rate": round(served / asks, 3),
        "hit_rate_by_form": {form: round(sum(v) / len(v), 3) for form, v in hits.items()},
        "ms": {
            name: {"p50": _p(v, 50), "p95": _p(v, 95), "n": len(v)} for name, v in timings.items()
        },
    }


# -- part 2: the semantic layer's decisions on built pairs --------------------------------


def decisions(embedder: Any) -> dict[str, Any]:
    from docqa.settings import AnswerSettings
    from inference.cache import question_signature

    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    a = embedder.embed_queries([p["a"] for p in pairs])
    b = embedder.embed_queries([p["b"] for p in pairs])
    # As the cache compares them: float16 candidates against a float32 question.
    cosine = (a.astype(np.float16).astype(np.float32) * b).sum(axis=1)
    same_words = np.array([question_signature(p["a"]) == question_signature(p["b"]) for p in pairs])
    kinds: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        kinds[p["kind"]].append(i)
    paraphrases = [i for k in PARAPHRASE_KINDS for i in kinds[k]]
    near_misses = [i for k in NEAR_MISS_KINDS for i in kinds[k]]

    def reused(threshold: float, check: bool, rows: list[int]) -> float:
        ok = cosine[rows] >= threshold
        if check:
            ok &= same_words[rows]
        return round(float(ok.mean()), 3)

    threshold = AnswerSettings().semantic_threshold
    by_kind = {
        kind: {
            "pairs": len(rows),
            "reused_docqa": reused(threshold, True, rows),
            "reused_cosine_only": reused(threshold, False, rows),
        }
        for kind, rows in kinds.items()
    }
    sweep = [
        {
            "threshold": t,
            "paraphrase_hit": reused(t, True, paraphrases),
            "form_hit": reused(t, True, kinds["form"]),
            "false_hit": reused(t, True, near_misses),
            "cosine_only_paraphrase_hit": reused(t, False, paraphrases),
            "cosine_only_false_hit": reused(t, False, near_misses),
        }
        for t in SWEEP
    ]
    return {
        "threshold": threshold,
        "pairs": len(pairs),
        "paraphrases": len(paraphrases),
        "near_misses": len(near_misses),
        "paraphrase_hit": reused(threshold, True, paraphrases),
        "false_hit": reused(threshold, True, near_misses),
        "false_hits": int((cosine[near_misses] >= threshold)[same_words[near_misses]].sum()),
        "by_kind": by_kind,
        "sweep": sweep,
    }


def lookup_cost(embedder: Any, candidates: int) -> dict[str, float]:
    """Milliseconds of a semantic-layer miss in a scope holding `candidates` questions:
    embedding the question, reading the list, comparing."""
    from inference.cache import AnswerCache, LocalCache, SimilarQuestions

    answers = AnswerCache(
        LocalCache(maxsize=candidates + 16),
        ttl_s=600,
        similar=SimilarQuestions(embedder, threshold=0.9, candidates=candidates),
    )
    scope = {"bench": "lookup"}
    rng = np.random.default_rng(0)
    for n in range(candidates):
        probe = answers.probe(scope, f"synthetic question {n}")
        vector = rng.standard_normal(embedder.dimension).astype(np.float32)
        probe.vector = vector / np.linalg.norm(vector)
        answers.store_answer(probe, {"text": str(n)})
    times = []
    for n in range(30):
        t0 = time.perf_counter()
        answers.lookup(answers.probe(scope, f"What was measured in cohort {n}?"))
        times.append(time.perf_counter() - t0)
    return {"candidates": candidates, "miss_ms_p50": _ms(statistics.median(times))}


# -- the section -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    import docqa  # noqa: F401 - offline switches before any model library loads
    from docqa.settings import load_settings
    from ingestion.embed import SentenceTransformerEmbedder

    quick = bool(getattr(args, "quick", False))
    embedder = SentenceTransformerEmbedder(load_settings().embedding)
    decided = decisions(embedder)
    cost = lookup_cost(embedder, load_settings().answer.semantic_candidates)
    served = traffic(quick, embedder)
    return {
        "title": "Answer cache",
        "markdown": markdown(decided, cost, served),
        "figures": {"decisions": decided, "semantic_lookup": cost, "traffic": served},
    }


def markdown(decided: dict[str, Any], cost: dict[str, float], served: dict[str, Any] | None) -> str:
    lines: list[str] = []
    if served is None:
        lines += ["Traffic: skipped (../shared/benchmarks/covidqa-dev.json is absent).", ""]
    else:
        lines += [
            f"Traffic: {served['questions']} covidqa-dev questions over {served['articles']} "
            "articles (extractive answers); each asked as written (a miss), then again, then "
            "in capitals with extra spaces and no '?', then as 'Can you tell me ...?'. "
            "Milliseconds per request, p50 / p95.",
            "",
            "| cache | semantic layer | hit rate | miss | exact hit | capitals hit "
            "| reworded hit (rate) | saved per hit (p50) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in served["runs"]:
            ms = r["ms"]

            def cell(name: str, ms: dict[str, Any] = ms) -> str:
                v = ms.get(name)
                return f"{v['p50']} / {v['p95']}" if v else "-"

            reworded = r["hit_rate_by_form"]["reworded"]
            saved = ms["miss"]["p50"] - ms["again hit"]["p50"] if "again hit" in ms else 0
            lines.append(
                f"| {r['backend']} | {'on' if r['semantic'] else 'off'} | {r['hit_rate']:.0%} "
                f"| {cell('miss')} | {cell('again hit')} | {cell('capitals hit')} "
                f"| {cell('reworded hit')} ({reworded:.0%}) | {saved:.1f} |"
            )
        lines.append("")
    lines += [
        f"A semantic-layer miss with {cost['candidates']} cached questions in scope costs "
        f"{cost['miss_ms_p50']} ms (p50: embedding the question, reading and comparing the "
        "list).",
        "",
        f"Semantic layer on benchmarks/cache_pairs.jsonl ({decided['paraphrases']} paraphrases,"
        f" {decided['near_misses']} near misses) at the threshold {decided['threshold']}: "
        f"paraphrases reused {decided['paraphrase_hit']:.0%}, near misses given another "
        f"question's answer {decided['false_hit']:.1%} ({decided['false_hits']}).",
        "",
        "| kind | pairs | reused (docqa: words + cosine) | reused (cosine alone) |",
        "|---|---|---|---|",
    ]
    for kind, row in decided["by_kind"].items():
        lines.append(
            f"| {kind} | {row['pairs']} | {row['reused_docqa']:.0%} "
            f"| {row['reused_cosine_only']:.0%} |"
        )
    lines += [
        "",
        "| threshold | paraphrases reused | in form | near misses reused "
        "| cosine alone: paraphrases | cosine alone: near misses |",
        "|---|---|---|---|---|---|",
    ]
    for row in decided["sweep"]:
        lines.append(
            f"| {row['threshold']:.2f} | {row['paraphrase_hit']:.0%} | {row['form_hit']:.0%} "
            f"| {row['false_hit']:.1%} | {row['cosine_only_paraphrase_hit']:.0%} "
            f"| {row['cosine_only_false_hit']:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer articles and questions")
    result = run(ap.parse_args())
    print(f"## {result['title']}\n\n{result['markdown']}")


if __name__ == "__main__":
    main()
