"""Parsing in a worker process with a memory and a time limit, so that a hostile or
broken file costs that worker and never the process that serves or writes the index.

One worker process serves one file at a time and is reused (starting one imports the
parsers: seconds). It is a plain `python` subprocess in its own session, not a
multiprocessing child: it works the same under uvicorn, the CLI and Airflow's task
processes (which may be daemonic and may not fork children of their own), and the whole
session, converters the parsers run included, is killed on timeout.

Limits, applied in the worker:
- memory: the address space (RLIMIT_AS) may grow by `parse_memory_mb` over what the idle
  worker holds; past it allocations fail, the parse stops with MemoryError, and the
  document fails `over_budget`. A worker the kernel kills instead is reported the same way.
- time: the parent waits `parse_timeout_s` for an answer, then kills the worker's session;
  the worker also caps its own CPU time (RLIMIT_CPU) in case the parent is gone.
- size: container checks before parsing and the extracted text after (ingestion/budget.py).

A worker is replaced after a failure over budget and after `MAX_PARSES_PER_WORKER` files,
so a fragmented heap never carries over. Embedding stays in the parent.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from docqa.domain import ParsedDocument
from docqa.errors import DocqaError, IngestError
from ingestion import parse as parsing
from ingestion.budget import OVER_BUDGET, ParseBudget, over_budget
from ingestion.parse import parse_within_budget

log = logging.getLogger(__name__)

MAX_PARSES_PER_WORKER = 50
STARTUP_TIMEOUT_S = 180
# What the worker runs for each file: "module:function" with parse_within_budget's
# signature. Tests name their own (a memory hog, a crash) to exercise the limits.
DEFAULT_PARSE_FUNCTION = "ingestion.parse:parse_within_budget"


class InProcessParser:
    """Parses in the calling process: the container checks and the text limit apply, the
    memory and time limits do not (DOCQA_INGESTION__ISOLATE_PARSING=false)."""

    def __init__(
        self, budget: ParseBudget, *, pdf_strategy: str = "fast", parser: str = "fast"
    ) -> None:
        self.budget = budget
        self.pdf_strategy = pdf_strategy
        self.parser = parser

    def parse(self, path: Path, *, source: str) -> ParsedDocument:
        return parse_within_budget(
            path,
            source=source,
            pdf_strategy=self.pdf_strategy,
            budget=self.budget,
            parser=self.parser,
        )

    def close(self) -> None:
        pass


class IsolatedParser:
    """Parses each file in a worker process under the budget's memory and time limits.

    Thread-safe: callers take turns on the one worker.
    """

    def __init__(
        self,
        budget: ParseBudget,
        *,
        pdf_strategy: str = "fast",
        parser: str = "fast",
        parse_function: str = DEFAULT_PARSE_FUNCTION,
    ) -> None:
        self.budget = budget
        self.pdf_strategy = pdf_strategy
        self.parser = parser
        self.parse_function = parse_function
        self._lock = threading.Lock()
        self._worker: _Worker | None = None

    def parse(self, path: Path, *, source: str) -> ParsedDocument:
        """:raises IngestError: the file's own failure, or `over_budget` when the worker ran
        out of memory or time, or died on the file."""
        with self._lock:
            worker = self._worker
            if worker is None or not worker.alive() or worker.parses >= MAX_PARSES_PER_WORKER:
                if worker is not None:
                    worker.stop()
                worker = self._worker = _Worker.start(self.budget, self.parse_function)
            worker.parses += 1
            try:
                reply = worker.ask(
                    (str(path), source, self.pdf_strategy, self.parser),
                    timeout=self.budget.timeout_s,
                )
            except _WorkerLost as lost:
                self._worker = None
                raise over_budget(str(lost)) from None
            kind, payload = reply
            if kind == "ok":
                return payload  # type: ignore[no-any-return]
            message, reason = payload
            if reason == OVER_BUDGET:
                worker.stop()  # its heap may be in any state; the next file gets a fresh one
                self._worker = None
            raise IngestError(message, reason=reason)

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id, while one runs (for tests and diagnostics)."""
        worker = self._worker
        return worker.process.pid if worker is not None and worker.alive() else None

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None


_shared: dict[tuple[ParseBudget, str, str], IsolatedParser] = {}
_shared_lock = threading.Lock()


def shared_parser(
    budget: ParseBudget, *, pdf_strategy: str = "fast", parser: str = "fast"
) -> IsolatedParser:
    """This process's parser for a budget. Every Docqa of a process (an eval run builds
    several, a test session hundreds) shares its worker instead of starting one more: the
    worker holds nothing of a caller between files. It ends with the process (its pipe
    closes and it exits)."""
    with _shared_lock:
        key = (budget, pdf_strategy, parser)
        worker = _shared.get(key)
        if worker is None:
            worker = _shared[key] = IsolatedParser(budget, pdf_strategy=pdf_strategy, parser=parser)
        return worker


class _WorkerLost(Exception):
    """The worker did not answer: killed on time, or dead (its message says which)."""


class _Worker:
    def __init__(self, process: subprocess.Popen[bytes], send: Connection, recv: Connection):
        self.process = process
        self.send = send
        self.recv = recv
        self.parses = 0

    @classmethod
    def start(cls, budget: ParseBudget, parse_function: str) -> _Worker:
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        bootstrap = (
            f"import sys; sys.path[:0] = {[p for p in sys.path if p]!r}; "
            f"from ingestion.isolation import serve; serve({to_child_r}, {to_parent_w})"
        )
        env = {
            **os.environ,
            # Fewer malloc arenas: less address space reserved that the limit would count.
            "MALLOC_ARENA_MAX": "2",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", bootstrap],
                pass_fds=(to_child_r, to_parent_w),
                start_new_session=True,  # its own process group: killed whole, converters too
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(to_child_r)
            os.close(to_parent_w)
        worker = cls(
            process,
            Connection(to_child_w, readable=False),
            Connection(to_parent_r, writable=False),
        )
        try:
            worker.send.send((budget, parse_function))
            ready = worker.recv.poll(STARTUP_TIMEOUT_S)
            if not ready or worker.recv.recv() != "ready":
                raise _WorkerLost("no answer")
        except (_WorkerLost, EOFError, OSError) as exc:
            worker.stop()
            raise DocqaError(
                f"the parser worker process did not start ({exc}, exit code "
                f"{process.returncode}); see the server log"
            ) from None
        return worker

    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, request: Any, *, timeout: float) -> Any:
        try:
            self.send.send(request)
            if not self.recv.poll(timeout):
                self.stop()
                raise _WorkerLost(
                    f"parsing took longer than {timeout:g} s (DOCQA_INGESTION__PARSE_TIMEOUT_S) "
                    "and was stopped"
                )
            return self.recv.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self.stop()
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise _WorkerLost(
                f"the parser process died on this file ({how}): it needs more memory than "
                "DOCQA_INGESTION__PARSE_MEMORY_MB allows, or crashes the parser"
            ) from None

    def stop(self) -> int | None:
        """Kill the worker's whole session and reap it; returns its exit code."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
        code = self.process.wait()
        for conn in (self.send, self.recv):
            conn.close()
        return code


# -- the worker's side -------------------------------------------------------------------


def serve(read_fd: int, write_fd: int) -> None:
    """The worker's loop: load the parsers, take on the limits, parse file after file."""
    recv = Connection(read_fd, writable=False)
    send = Connection(write_fd, readable=False)
    budget, function_name = recv.recv()
    module, _, name = function_name.partition(":")
    parse: Callable[..., ParsedDocument] = getattr(importlib.import_module(module), name)
    _warm_up()
    _limit_memory(budget.memory_mb)
    parsing.unstructured_loader = lambda: _load_unstructured(budget)
    send.send("ready")
    while True:
        try:
            request = recv.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        path, source, pdf_strategy, parser = request
        _limit_cpu(budget.timeout_s)
        try:
            parsed = parse(
                Path(path), source=source, pdf_strategy=pdf_strategy, budget=budget, parser=parser
            )
            reply: tuple[str, Any] = ("ok", parsed)
        except IngestError as exc:
            reply = ("failed", (exc.message, exc.reason))
        except MemoryError:
            reply = ("failed", (_memory_message(budget), OVER_BUDGET))
        except Exception as exc:  # noqa: BLE001 - any parser bug is this file's failure
            reply = ("failed", (f"the parser failed on this file: {exc!r}"[:500], "corrupt"))
        try:
            send.send(reply)
        except MemoryError:
            send.send(("failed", (_memory_message(budget), OVER_BUDGET)))
        if reply[0] == "failed" and reply[1][1] == OVER_BUDGET:
            return


def _memory_message(budget: ParseBudget) -> str:
    return (
        f"parsing needed more than {budget.memory_mb} MiB of memory "
        "(DOCQA_INGESTION__PARSE_MEMORY_MB) and was stopped"
    )


def _warm_up() -> None:
    """Import docqa's own readers before the limit, so it measures parsing, not importing
    (pdfium is a native library whose mapping would otherwise count). unstructured, which
    takes seconds to import, waits for the first file that needs it: `_load_unstructured`."""
    import docx  # noqa: F401
    import markdown_it  # noqa: F401
    import pypdfium2  # noqa: F401


_unstructured_loaded = False


def _load_unstructured(budget: ParseBudget) -> None:
    """Import unstructured with the memory limit lifted, then set the limit again above
    what the worker now holds: the import is the worker's, not the file's."""
    global _unstructured_loaded
    if _unstructured_loaded:
        return
    _lift_memory_limit()
    try:
        parsing.load_unstructured()
    finally:
        _limit_memory(budget.memory_mb)
    _unstructured_loaded = True


def _limit_memory(memory_mb: int) -> None:
    try:
        import resource
    except ImportError:
        log.warning("no resource limits on this platform: the parser runs without a memory cap")
        return
    current = _address_space()
    if not current:
        log.warning("cannot read this process's size: the parser runs without a memory cap")
        return
    limit = current + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:  # some kernels refuse or ignore RLIMIT_AS
        log.warning("cannot cap the parser's memory (%s): it runs without a memory cap", exc)


def _lift_memory_limit() -> None:
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass  # no limit was set either (see _limit_memory)


def _limit_cpu(timeout_s: float) -> None:
    """Cap this parse's CPU seconds too: if the parent died, nobody else would stop it."""
    try:
        import resource
    except ImportError:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = int(used + timeout_s * 2 + 10)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _address_space() -> int:
    """This process's virtual memory size in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0
