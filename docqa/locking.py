"""One writer per embedded data folder.

Chroma's on-disk client is not safe for several processes writing one folder (chroma-core
#551, #3769). In embedded mode, every process that writes (the API server for its whole
life, `docqa ingest` for one command) takes this lock first, and a second writer gets a
clear error naming the holder instead of corrupting the index. With a Chroma server
(DOCQA_CHROMA_URL) the server serialises writes and no lock is needed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from docqa.errors import WriterBusyError
from docqa.settings import Settings


@contextmanager
def writer_lock(settings: Settings, *, holder: str) -> Iterator[None]:
    """Hold the data folder for writing.

    :raises WriterBusyError: another process holds it; the message says which and what to do.
    """
    if settings.chroma_url:
        yield
        return
    from filelock import FileLock, Timeout

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.data_dir / ".writer.lock"), timeout=0)
    info = settings.data_dir / ".writer.json"
    try:
        lock.acquire()
    except Timeout:
        raise WriterBusyError(_busy_message(settings.data_dir, info)) from None
    try:
        info.write_text(json.dumps({"pid": os.getpid(), "holder": holder, "since": time.time()}))
        yield
    finally:
        info.unlink(missing_ok=True)
        lock.release()


def _busy_message(data_dir: Path, info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text())
        who = f"{info.get('holder', 'another docqa process')} (pid {info.get('pid')})"
    except (OSError, ValueError):
        who = "another docqa process"
    return (
        f"{who} is writing to {data_dir}; the embedded index takes one writer at a "
        "time. Upload through the running API (POST /v1/documents), stop that process, or "
        "run a Chroma server and set DOCQA_CHROMA_URL."
    )
