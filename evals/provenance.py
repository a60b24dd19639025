"""Where a run's numbers come from: code version, models, settings and the prompt."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from docqa import __version__
from docqa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# Stage settings that change what a run measures; server addresses and the API section do not.
_MEASURED_SECTIONS = ("embedding", "chunking", "ingestion", "retrieval", "answer")
_SECRET = re.compile(r"(api_key|password|secret|token)$")


def git_commit() -> str | None:
    """The checked-out commit (with `-dirty` when files differ), or DOCQA_GIT_COMMIT when the
    code is installed without its repository (a container image)."""
    if os.environ.get("DOCQA_GIT_COMMIT"):
        return os.environ["DOCQA_GIT_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def prompt_version() -> str | None:
    """The vLLM prompt's version constant, when the prompt module is installed."""
    try:
        module = importlib.import_module("inference.prompt")
    except ImportError:
        return None
    for name in ("PROMPT_VERSION", "VERSION"):
        value = getattr(module, name, None)
        if value is not None:
            return str(value)
    return None


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if v and _SECRET.search(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"://[^/@\s]+@", "://***@", value)  # credentials inside URLs
    return value


def run_config(settings: Settings, *, generator: str, embedding_model_id: str) -> dict[str, Any]:
    """The configuration stored with a run: enough to reproduce it or to see what changed."""
    dump = settings.model_dump(mode="json")
    config: dict[str, Any] = {section: dump[section] for section in _MEASURED_SECTIONS}
    config["answer"]["generator"] = generator
    models: dict[str, Any] = {"embedding": embedding_model_id}
    if generator == "vllm":
        config["vllm"] = dump.get("vllm")
        models["llm"] = (dump.get("vllm") or {}).get("model")
    # The LLM prompt's version (inference/prompt.py); kept for extractive runs too, so a
    # later vllm run against this baseline shows whether the prompt changed.
    config["prompt_version"] = prompt_version()
    config["models"] = models
    config["docqa_version"] = __version__
    return redact(config)  # type: ignore[no-any-return]
