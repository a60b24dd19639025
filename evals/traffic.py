"""Recording the questions docqa serves, for drift (`docqa eval drift`).

The answering service (inference/answering.py) hands each served question to its
question log; a `TrafficRecorder` is that log when recording is on. Recording must never break
or slow an answer: `record` only puts a small tuple on a queue, and a daemon thread hashes
and writes batches to the eval store. A failing database is logged (once a minute at
most) and the questions of that batch are dropped. What is kept is
DOCQA_EVALS__RECORD_TRAFFIC: full (text, scores), hashes (SHA-256 of the text, scores), off.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from docqa.domain import Answer
    from docqa.settings import Settings
    from evals.store import EvalStore, TrafficRecord
    from retrieval.protocols import Retrieval

log = logging.getLogger("docqa.evals.traffic")

MAX_QUEUED = 10_000  # beyond this, questions are dropped rather than memory grown
BATCH = 200
PRUNE_EVERY_S = 3600.0


class TrafficRecorder:
    def __init__(
        self, settings: Settings, *, open_store: Callable[[], EvalStore] | None = None
    ) -> None:
        self.mode = settings.evals.record_traffic
        self.settings = settings
        self._open_store = open_store
        # Served questions, and flush markers set once everything before them is written.
        self._queue: queue.Queue[tuple[Any, ...] | threading.Event] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._store: EvalStore | None = None
        self._last_error = 0.0
        self._last_prune = 0.0

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def record(self, question: str, answer: Answer, retrieval: Retrieval | None) -> None:
        """Queue one served question; never raises, never blocks."""
        if not self.enabled:
            return
        try:
            scores = (
                [round(float(h.relevance or 0.0), 4) for h in retrieval.hits[:5]]
                if retrieval is not None
                else []
            )
            nearest = float(retrieval.nearest) if retrieval is not None else None
            item = (
                datetime.now(UTC),
                question,
                nearest,
                scores,
                bool(answer.found),
                bool(answer.cached),
                answer.timings_ms.get("total"),
            )
            self._ensure_thread()
            self._queue.put_nowait(item)
        except queue.Full:
            self._warn("the traffic queue is full; dropping questions until it drains")
        except Exception:  # noqa: BLE001 - recording must never break an answer
            self._warn("could not queue a question for drift recording", exc_info=True)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every question queued before this call is written (tests, exit)."""
        if self._thread is None:
            return True
        written = threading.Event()
        try:
            self._queue.put(written, timeout=timeout)
        except queue.Full:
            return False
        return written.wait(timeout)

    # -- the writer thread ---------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="docqa-traffic-recorder", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush, 2.0)

    def _run(self) -> None:
        while True:
            batch: list[tuple[Any, ...]] = []
            markers: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for marker in markers:  # every question queued before it is written now
                marker.set()

    def _write(self, items: list[tuple[Any, ...]]) -> None:
        try:
            store = self._open()
            store.record_traffic(self._to_record(item) for item in items)
            now = time.monotonic()
            if now - self._last_prune > PRUNE_EVERY_S:
                self._last_prune = now
                days = self.settings.evals.traffic_retention_days
                store.prune_traffic(datetime.now(UTC) - timedelta(days=days))
        except Exception:  # noqa: BLE001 - a database outage loses drift data, not answers
            self._warn(f"could not record {len(items)} served questions", exc_info=True)

    def _open(self) -> EvalStore:
        if self._store is None:
            if self._open_store is None:
                from evals.store import open_store

                self._store = open_store(self.settings)
            else:
                self._store = self._open_store()
        return self._store

    def _to_record(self, item: tuple[Any, ...]) -> TrafficRecord:
        from evals.store import TrafficRecord

        at, question, nearest, scores, found, cached, total_ms = item
        return TrafficRecord(
            at=at,
            question=question if self.mode == "full" else None,
            question_sha256=hashlib.sha256(question.encode("utf-8")).hexdigest(),
            nearest=None if cached else nearest,
            top_scores=scores,
            found=found,
            cached=cached,
            total_ms=total_ms,
        )

    def _warn(self, message: str, *, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_error > 60:
            self._last_error = now
            log.warning(message, exc_info=exc_info)
