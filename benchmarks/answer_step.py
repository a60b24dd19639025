"""The extractive answerer's cost and quality alone, per variant (issue 15, item 4).

    .venv/bin/python -m benchmarks.answer_step [--data-dir DIR] [--set NAME] [--variants a,b]

Retrieves the context of every answerable question of a set (covidqa-dev by default;
paraphrase, technical) once over the index that `benchmarks.quality` builds (same default
folder), then, per variant, answers
from that context as `/v1/ask` does (`AnsweringService.answer_from`: the not-found rule,
then `ExtractiveGenerator.generate`). `generate` is timed with the answerer's sentence
vectors forgotten before each question (a question over passages not seen before, the cost
that sets the ask p95) and the question's vector already known (retrieval embedded it).
Variants run interleaved, question by question, so a busy machine slows all alike.

Prints per variant: generate p50/p95 ms, sentences embedded per question, contains-gold,
citation precision, wrongly refused, and how many answers differ from the first variant's.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import inference.extractive as extractive
from benchmarks.quality import RESULTS, Tally, open_index, question_sets
from docqa.domain import Answer
from inference.extractive import ExtractiveGenerator
from tests.fakes.counting import CountingEmbedder

# Answer settings and inference.extractive constants per variant. "before" is the answerer
# as it was: every sentence embedded, in one batch.
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"embedded_sentences": 0, "EMBED_BATCH": 1000, "EMBED_CHARS": None},
    "all-b4": {"embedded_sentences": 0, "EMBED_BATCH": 4, "EMBED_CHARS": None},
    "k6": {"embedded_sentences": 6, "EMBED_BATCH": 4, "EMBED_CHARS": None},
    "k8": {"embedded_sentences": 8, "EMBED_BATCH": 4, "EMBED_CHARS": None},
    "k10": {"embedded_sentences": 10, "EMBED_BATCH": 4, "EMBED_CHARS": None},
    "k12": {"embedded_sentences": 12, "EMBED_BATCH": 4, "EMBED_CHARS": None},
    "k8-b8": {"embedded_sentences": 8, "EMBED_BATCH": 8, "EMBED_CHARS": None},
    "k8-b2": {"embedded_sentences": 8, "EMBED_BATCH": 2, "EMBED_CHARS": None},
    "k8-b1": {"embedded_sentences": 8, "EMBED_BATCH": 1, "EMBED_CHARS": None},
    "k8-b2-c300": {"embedded_sentences": 8, "EMBED_BATCH": 2, "EMBED_CHARS": 300},
    "k8-b2-c200": {"embedded_sentences": 8, "EMBED_BATCH": 2, "EMBED_CHARS": 200},
    "k6-b2-c300": {"embedded_sentences": 6, "EMBED_BATCH": 2, "EMBED_CHARS": 300},
    "k10-b2-c300": {"embedded_sentences": 10, "EMBED_BATCH": 2, "EMBED_CHARS": 300},
    "k4-b2-c300": {"embedded_sentences": 4, "EMBED_BATCH": 2, "EMBED_CHARS": 300},
    "k5-b2-c300": {"embedded_sentences": 5, "EMBED_BATCH": 2, "EMBED_CHARS": 300},
    "k6-b2-c200": {"embedded_sentences": 6, "EMBED_BATCH": 2, "EMBED_CHARS": 200},
    "k5-b2-c200": {"embedded_sentences": 5, "EMBED_BATCH": 2, "EMBED_CHARS": 200},
    "k6-narrow": {"embedded_sentences": 6, "EMBED_BATCH": 2, "EMBED_CHARS": 300, "LOW_OVERLAP": 0},
    "k6-wide": {"embedded_sentences": 6, "EMBED_BATCH": 2, "EMBED_CHARS": 300, "LOW_OVERLAP": 0.5},
    "k6-b3-c300": {"embedded_sentences": 6, "EMBED_BATCH": 3, "EMBED_CHARS": 300},
    # Answer shape (stop 20). "stop-19" is the answerer before it: quotes in score order,
    # followers from any document within 0.85 of the best.
    "stop-19": {"READING_ORDER": False, "FOLLOWERS_SAME_SOURCE": False, "FOLLOWER_RATIO": 0.85},
    "reading-order": {"FOLLOWERS_SAME_SOURCE": False, "FOLLOWER_RATIO": 0.85},
    **{
        f"any-{r}": {"FOLLOWERS_SAME_SOURCE": False, "FOLLOWER_RATIO": r}
        for r in (0.9, 0.8, 0.75, 0.7)
    },
    "any-max2": {"FOLLOWERS_SAME_SOURCE": False, "FOLLOWER_RATIO": 0.85, "max_sentences": 2},
    "any-max4": {"FOLLOWERS_SAME_SOURCE": False, "FOLLOWER_RATIO": 0.85, "max_sentences": 4},
    **{f"same-{r}": {"FOLLOWER_RATIO": r} for r in (0.85, 0.8, 0.75, 0.7)},
    **{
        f"same-max{m}-{r}": {"FOLLOWER_RATIO": r, "max_sentences": m}
        for m, r in ((4, 0.8), (4, 0.75), (4, 0.7), (5, 0.7))
    },
    # Sentences holding a figure gain W_ANSWER_TYPE when the question asks for one.
    **{f"figure-{w}": {"W_ANSWER_TYPE": w} for w in (0.0, 0.03, 0.05, 0.08, 0.12, 0.16, 0.2)},
    # The same, with word overlap weighing as much as similarity.
    "k6-b2-c300-w45": {
        "embedded_sentences": 6,
        "EMBED_BATCH": 2,
        "EMBED_CHARS": 300,
        "W_SIMILARITY": 0.45,
        "W_OVERLAP": 0.45,
    },
}


def _generator(dq: Any, variant: dict[str, Any]) -> tuple[ExtractiveGenerator, dict[str, Any]]:
    fields = {k: v for k, v in variant.items() if k.islower()}
    constants = {k: v for k, v in variant.items() if k.isupper()}
    settings = dq.settings.answer.model_copy(update=fields)
    return ExtractiveGenerator(dq.embedder, settings), constants


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=RESULTS / "quality")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--reps", type=int, default=3, help="timed passes over the questions")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--set", default="covidqa-dev", help="covidqa-dev, paraphrase, technical")
    args = ap.parse_args(argv)

    qset = next(s for s in question_sets(args.data_dir) if s.name == args.set)
    questions = [q for q in qset.questions if q.gold_source is not None]
    if args.limit:
        questions = questions[: args.limit]
    dq = open_index(args.data_dir, qset.index, answer={"cache_ttl_s": 0})
    cached = args.data_dir / f"answer-context-{args.set}-{dq.settings.embedding.backend}.pkl"
    if cached.exists():
        contexts = pickle.loads(cached.read_bytes())
    else:
        contexts = {}
    missing = [q for q in questions if q.qid not in contexts]
    for q in missing:
        contexts[q.qid] = dq.retriever.retrieve(q.text)
    if missing:
        cached.write_bytes(pickle.dumps(contexts))
    service = dq.answering
    names = [v for v in args.variants.split(",") if v]
    counting = CountingEmbedder(dq.embedder)
    generators = {}
    for name in names:
        gen, constants = _generator(dq, VARIANTS[name])
        gen.embedder = counting  # type: ignore[assignment]
        generators[name] = (gen, constants)
    defaults = {k: getattr(extractive, k) for c in generators.values() for k in c[1]}
    ms: dict[str, list[float]] = {n: [] for n in names}
    embedded: dict[str, list[int]] = {n: [] for n in names}
    answers: dict[str, list[Answer]] = {n: [] for n in names}
    for rep in range(args.reps):
        for q in questions:
            retrieval = contexts[q.qid]
            if not service.relevant(retrieval):
                if rep == 0:
                    for n in names:
                        answers[n].append(Answer(text="", found=False, citations=[]))
                continue
            dq.embedder.embed_query(q.text)  # retrieval has embedded it
            for n in names:
                gen, constants = generators[n]
                for k, v in {**defaults, **constants}.items():
                    setattr(extractive, k, v)
                gen._vectors.clear()
                counting.batches.clear()
                t0 = time.perf_counter()
                answer = gen.generate(q.text, retrieval.hits)
                ms[n].append((time.perf_counter() - t0) * 1000)
                if rep == 0:
                    embedded[n].append(counting.documents)
                    answers[n].append(answer)
    for k, v in defaults.items():
        setattr(extractive, k, v)
    rows = []
    reference = answers[names[0]]
    for n in names:
        tally = Tally()
        for q, answer in zip(questions, answers[n], strict=True):
            tally.add_answer(q, answer)
        summary = tally.summary()
        row = {
            "variant": n,
            "generate_p50_ms": round(float(np.percentile(ms[n], 50)), 1),
            "generate_p95_ms": round(float(np.percentile(ms[n], 95)), 1),
            "embedded_mean": round(statistics.mean(embedded[n]), 1),
            "contains": summary["contains"],
            "citation_precision": summary["citation_precision"],
            "wrongly_refused": summary["wrongly_refused"],
            "chars_mean": round(
                statistics.mean([len(a.text) for a in answers[n] if a.found] or [0]), 1
            ),
            "changed": sum(a.text != b.text for a, b in zip(answers[n], reference, strict=True)),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "set": args.set,
        "backend": dq.settings.embedding.backend,
        "questions": len(questions),
        "reps": args.reps,
        "variants": {n: VARIANTS[n] for n in names},
        "rows": rows,
    }
    target = RESULTS / f"answer-step-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2))
    print(f"written to {target}")
    return report


if __name__ == "__main__":
    main()
