"""A real uvicorn server on loopback around a Docqa on a temporary data folder."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from api.main import create_app
from docqa.services import Docqa


@dataclass
class LiveServer:
    url: str
    docqa: Docqa
    client: httpx.Client

    def wait_for_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish within {timeout} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def start_server(make_docqa: Callable[..., Docqa]) -> Iterator[Callable[..., LiveServer]]:
    servers: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(
        docqa: Docqa | None = None, headers: dict[str, str] | None = None, **overrides: Any
    ) -> LiveServer:
        dq = docqa or make_docqa(**overrides)
        port = _free_port()
        app = create_app(docqa=dq)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, timeout=60, headers=headers or {})
        servers.append((server, thread, client))
        return LiveServer(url, dq, client)

    yield start
    for server, thread, client in servers:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server()
