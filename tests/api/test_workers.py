"""`docqa serve --workers N`: several uvicorn processes over one Chroma server, each
answering, uploads indexed by whichever worker received them and found through any."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCQA = [sys.executable, "-c", "from cli.main import entrypoint; entrypoint()"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env["PYTHONPATH"] = str(ROOT)
    env["DOCQA_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_several_workers_without_a_chroma_server_are_refused(tmp_path):
    done = subprocess.run(
        [*DOCQA, "serve", "--workers", "2", "--port", str(free_port())],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "need a Chroma server" in done.stderr and "DOCQA_CHROMA_URL" in done.stderr


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.slow
def test_two_workers_share_one_index_through_a_chroma_server(tmp_path, chroma_server):
    port = free_port()
    proc = subprocess.Popen(
        [*DOCQA, "--chroma-url", chroma_server, "serve", "--workers", "2", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the workers did not get ready within 180 s"
            time.sleep(0.5)
        assert len(_children(proc.pid)) >= 2  # the supervisor and its worker processes

        upload = client.post(
            "/v1/documents",
            files={"files": ("lighthouse.txt", b"The lighthouse keeper lights the lamp at dusk.")},
        )
        assert upload.status_code == 202, upload.text
        job_id = upload.json()["job_id"]
        deadline = time.monotonic() + 120
        # Polled through both workers: whichever runs the job, the record store says so.
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        # Every worker finds it (new connections spread over the workers).
        for _ in range(8):
            with httpx.Client(base_url=client.base_url, timeout=60) as fresh:
                hits = fresh.post("/v1/search", json={"query": "when is the lamp lit"}).json()
            assert hits["results"][0]["source"] == "lighthouse.txt", hits
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
