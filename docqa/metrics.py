"""docqa's own Prometheus metrics, shared by every stage (the HTTP ones come from
prometheus-fastapi-instrumentator in api/observability.py). Exposed at /metrics.

Names follow Prometheus conventions: seconds for durations, `_total` for counters. Latency
buckets reach 120 s because a generated answer on a busy GPU can take that long.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from docqa import __version__

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

BUILD = Info("docqa_build", "The running docqa's version and backends.")
BUILD.info({"version": __version__})

RETRIEVAL_SECONDS = Histogram(
    "docqa_retrieval_seconds",
    "Time to retrieve the passages of one question.",
    buckets=STAGE_BUCKETS,
)
GENERATION_SECONDS = Histogram(
    "docqa_generation_seconds",
    "Time to write one answer from its passages (the whole stream when streamed).",
    ["generator"],
    buckets=STAGE_BUCKETS,
)
FIRST_TOKEN_SECONDS = Histogram(
    "docqa_time_to_first_token_seconds",
    "From the question to the first piece of a streamed answer.",
    buckets=STAGE_BUCKETS,
)
PROMPT_TOKENS = Counter("docqa_prompt_tokens_total", "Prompt tokens sent to the LLM.")
COMPLETION_TOKENS = Counter("docqa_completion_tokens_total", "Tokens the LLM wrote.")
ANSWERS = Counter(
    "docqa_answers_total",
    "Answers served, by outcome: answered, not_found, degraded (the LLM failed and the "
    "extractive answerer stood in) or cached.",
    ["outcome"],
)
UPSTREAM_FAILURES = Counter(
    "docqa_upstream_failures_total",
    "Failed calls to a model server, by server and reason.",
    ["server", "reason"],
)
INGESTED_DOCUMENTS = Counter(
    "docqa_ingested_documents_total",
    "Documents through ingestion, by outcome (added, updated, unchanged, failed).",
    ["outcome"],
)
INGESTED_CHUNKS = Counter("docqa_ingested_chunks_total", "Chunks written to the index.")
INGEST_FAILURES = Counter(
    "docqa_ingest_failures_total",
    "Documents that could not be indexed, by reason (empty, corrupt, too_large, ...).",
    ["reason"],
)
QUEUE_DEPTH = Gauge(
    "docqa_ingest_queue_depth", "Ingestion jobs queued or running (read at scrape time)."
)


def observe_answer(outcome: str, timings_ms: dict[str, float], generator: str) -> None:
    """One served answer: its outcome and stage timings."""
    ANSWERS.labels(outcome).inc()
    if "retrieve" in timings_ms:
        RETRIEVAL_SECONDS.observe(timings_ms["retrieve"] / 1000)
    if "generate" in timings_ms:
        GENERATION_SECONDS.labels(generator).observe(timings_ms["generate"] / 1000)
    if "first_delta" in timings_ms:
        FIRST_TOKEN_SECONDS.observe(timings_ms["first_delta"] / 1000)


def observe_usage(usage: dict[str, int] | None) -> None:
    if usage:
        PROMPT_TOKENS.inc(usage.get("prompt_tokens", 0))
        COMPLETION_TOKENS.inc(usage.get("completion_tokens", 0))


def observe_ingest(outcome: str, chunks: int, reason: str | None) -> None:
    """One document through ingestion."""
    INGESTED_DOCUMENTS.labels(outcome).inc()
    if outcome in ("added", "updated"):
        INGESTED_CHUNKS.inc(chunks)
    if outcome == "failed":
        INGEST_FAILURES.labels(reason or "unknown").inc()
