"""Throughput with several uvicorn workers (`docqa serve --workers N`) over one Chroma
server: requests/s of /v1/ask (extractive, answer cache off) at a few concurrencies, per
worker count, same index, same questions not asked before.

    .venv/bin/python -m benchmarks.workers [--quick] [--workers 1,2] [--concurrency 1,8,32]

A Chroma server (`chroma run`) and the record store (SQLite) in a temporary folder hold the
covidqa-dev articles (12 with --quick), ingested once with `docqa ingest`. On a machine with
few cores the workers compete with each other and with Chroma for them: the figure says
what one more worker buys here, not on a bigger host.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.ingest import COVIDQA, corpus_files
from benchmarks.serving import _rps
from tests.fakes.loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCQA = [sys.executable, "-c", "from cli.main import entrypoint; entrypoint()"]


def _wait(url: str, proc: subprocess.Popen[Any], path: str, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} was not up within {timeout} s")


@contextmanager
def _process(cmd: list[str], env: dict[str, str], url: str, path: str) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(url, proc, path)
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(
    quick: bool,
    workers: Sequence[int] = (1, 2),
    concurrency: Sequence[int] = (1, 8, 32),
) -> dict[str, Any]:
    from evals.benchmark import load_benchmark

    if not COVIDQA.exists():
        return {"rows": [], "markdown": f"skipped: {COVIDQA} not found"}
    questions = [q.question for q in load_benchmark(COVIDQA).questions]
    per_run = 24 if quick else 64
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        work = Path(tmp)
        chroma_port = free_port()
        chroma = f"http://127.0.0.1:{chroma_port}"
        exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
        env.update(
            PYTHONPATH=str(ROOT),
            DOCQA_DATA_DIR=str(work / "data"),
            DOCQA_CHROMA_URL=chroma,
            DOCQA_ANSWER__CACHE_TTL_S="0",
            # Every request is measured, none refused.
            DOCQA_API__RATE_LIMITS__ENABLED="false",
        )
        chroma_cmd = [exe, "run", "--path", str(work / "chroma"), "--port", str(chroma_port)]
        with _process(chroma_cmd, env, chroma, "/api/v2/heartbeat"):
            files = corpus_files("covidqa", work / "articles", quick)
            subprocess.run([*DOCQA, "ingest", str(work / "articles")], env=env, check=True)
            unseen = iter(questions[len(files) :])
            for n in workers:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                serve = [*DOCQA, "serve", "--workers", str(n), "--port", str(port)]
                with _process(serve, env, url, "/readyz"):
                    # Warm every worker (model, index) before timing.
                    asyncio.run(_rps(url, [next(unseen) for _ in range(4 * n)], 4 * n))
                    row: dict[str, Any] = {"workers": n}
                    for c in concurrency:
                        batch = [next(unseen) for _ in range(per_run)]
                        row[f"c{c}"] = round(asyncio.run(_rps(url, batch, c)), 1)
                    rows.append(row)
    return {"rows": rows, "markdown": markdown(rows, concurrency, os.cpu_count() or 1)}


def markdown(rows: list[dict[str, Any]], concurrency: Sequence[int], cores: int) -> str:
    head = " | ".join(f"req/s at {c}" for c in concurrency)
    lines = [f"| workers | {head} |", "|---|" + "---|" * len(concurrency)]
    for r in rows:
        lines.append(
            f"| {r['workers']} | " + " | ".join(str(r[f"c{c}"]) for c in concurrency) + " |"
        )
    lines.append(
        f"\n/v1/ask, extractive answers, answer cache off, questions not asked before; "
        f"one Chroma server; {cores} CPU cores on this machine."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 covidqa articles, fewer requests")
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    ap.add_argument("--concurrency", default="1,8,32", help="concurrent requests")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    concurrency = [int(c) for c in args.concurrency.split(",") if c]
    print(run(args.quick, workers, concurrency)["markdown"])


if __name__ == "__main__":
    main()
