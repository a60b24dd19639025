"""ZIP bombs against a real server: how much memory the API process takes while they fail.

Starts `docqa serve` on loopback in a fresh data folder, uploads over HTTP
  1. the issue's bomb: a ~2 MB DOCX whose word/document.xml inflates to 2 GiB of zeros;
  2. the same bomb with a lying ZIP directory (it declares 8 MiB for that part), which the
     directory checks cannot see: the parser's own limits must hold;
  3. an ordinary DOCX, to show the server still indexes;
polls each job until it finishes, and samples the RSS of the server process and of its
parser worker (psutil, every 20 ms) before and during.

    .venv/bin/python -m benchmarks.zipbomb [--json]

Measured before this check existed (same bomb, unguarded parse): 0.9 -> 5.1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.documents import write_docx, write_docx_bomb
from tests.fakes.loopback import free_port

GIB = 1 << 30
MIB = 1 << 20


def lie_about_size(path: Path, member: str, declared: int) -> Path:
    """Rewrite the uncompressed size `member` declares, in its local header and in the
    central directory, to `declared` (the data and its CRC stay as they are)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    if info.file_size >= 0xFFFFFFFF or info.compress_size >= 0xFFFFFFFF:
        raise ValueError("lie_about_size handles 32-bit ZIP sizes only")
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    name = member.encode()
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + name_len]) == name:
            struct.pack_into("<I", data, at + 24, declared)
            break
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    return path


class Sampler:
    """Peak RSS of a process and of its children, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.server_peak = 0
        self.worker_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.server_peak = max(self.server_peak, self.process.memory_info().rss)
                for child in self.process.children(recursive=True):
                    try:
                        self.worker_peak = max(self.worker_peak, child.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            time.sleep(self.every_s)


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")},
        "DOCQA_DATA_DIR": str(data_dir),
        "DOCQA_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    serve = "from cli.main import entrypoint; entrypoint()"
    command = [sys.executable, "-c", serve, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, env=env)


def wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if client.get("/livez").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not start")


def upload_and_wait(client: httpx.Client, path: Path, timeout: float = 600) -> dict[str, Any]:
    started = time.monotonic()
    with path.open("rb") as fh:
        r = client.post("/v1/documents", files=[("files", (path.name, fh))])
    r.raise_for_status()
    job_id = r.json()["job_id"]
    while time.monotonic() - started < timeout:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            doc = job["documents"][0]
            return {
                "file": path.name,
                "size_mb": round(path.stat().st_size / MIB, 2),
                "status_code": r.status_code,
                "job": job["status"],
                "outcome": doc["outcome"],
                "reason": doc.get("reason"),
                "error": doc.get("error"),
                "seconds": round(time.monotonic() - started, 1),
            }
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not finish in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="docqa-zipbomb-") as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        bomb = write_docx_bomb(files / "bomb.docx", 2 * GIB)
        liar = write_docx_bomb(files / "liar.docx", 2 * GIB - MIB, zip64=False)
        lie_about_size(liar, "word/document.xml", 8 * MIB)
        ordinary = write_docx(files / "ordinary.docx", {"Leave": ["Staff get 27 days."] * 20})

        port = free_port()
        server = start_server(root / "data", port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                wait_ready(client, server, timeout=300)
                # Warm: the model is loaded and the parser worker started, as in service.
                upload_and_wait(client, ordinary)
                time.sleep(1)
                baseline = psutil.Process(server.pid).memory_info().rss
                results = []
                with Sampler(server.pid) as sampler:
                    for path in (bomb, liar, ordinary):
                        results.append(upload_and_wait(client, path))
                after = psutil.Process(server.pid).memory_info().rss
        finally:
            server.terminate()
            server.wait(timeout=60)

    report = {
        "server_rss_mb": {
            "before": round(baseline / MIB),
            "peak_during": round(sampler.server_peak / MIB),
            "after": round(after / MIB),
            "peak_growth": round((sampler.server_peak - baseline) / MIB),
        },
        "parser_worker_peak_rss_mb": round(sampler.worker_peak / MIB),
        "uploads": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    rss = report["server_rss_mb"]
    print(
        f"server RSS: {rss['before']} MB before, peak {rss['peak_during']} MB during "
        f"(+{rss['peak_growth']} MB), {rss['after']} MB after; parser worker peak "
        f"{report['parser_worker_peak_rss_mb']} MB"
    )
    for r in results:
        print(
            f"  {r['file']:14} {r['size_mb']:>6} MB  HTTP {r['status_code']}  job {r['job']:9} "
            f"{r['reason'] or r['outcome']:12} {r['seconds']:>6} s  {(r['error'] or '')[:90]}"
        )


if __name__ == "__main__":
    main()
