"""Logging for every docqa process: a level and a format from the settings, and the id of
the request being served on every line.

`DOCQA_LOG_LEVEL` (INFO) and `DOCQA_LOG_FORMAT` (text, or json: one object per line with
time, level, logger, message, request_id and any exception). The request id is a context
variable the API sets per request (from the client's X-Request-ID, or made); log lines
written outside a request carry "-".
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str] = ContextVar("docqa_request_id", default="-")

_HANDLER_NAME = "docqa"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the root logger's records to stderr in the chosen format. Idempotent: calling it
    again (tests, a second app in one process) replaces docqa's handler, never stacks."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.setLevel(level)  # libraries that lower their own loggers' level stay quiet
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless docqa itself is being debugged.
    for name in ("httpx", "httpcore", "chromadb", "urllib3", "bm25s", "sentence_transformers"):
        logging.getLogger(name).setLevel("DEBUG" if level == "DEBUG" else "WARNING")
