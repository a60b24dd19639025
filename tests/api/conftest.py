"""A real uvicorn server on loopback around a Docqa on a temporary data folder."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.main import create_app
from app import Docqa
from tests.fakes.loopback import LoopbackServer, serve


@dataclass
class LiveServer:
    url: str
    docqa: Docqa
    client: httpx.Client

    def wait_for_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.get(f"/v1/jobs/{job_id}")
            if response.status_code == 429:  # polled past the rate limit: wait as told
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            job = response.json()
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish within {timeout} s")


@pytest.fixture
def start_server(make_docqa: Callable[..., Docqa]) -> Iterator[Callable[..., LiveServer]]:
    servers: list[tuple[LoopbackServer, httpx.Client]] = []

    def start(
        docqa: Docqa | None = None, headers: dict[str, str] | None = None, **overrides: Any
    ) -> LiveServer:
        dq = docqa or make_docqa(**overrides)
        served = serve(create_app(docqa=dq))
        client = httpx.Client(base_url=served.url, timeout=60, headers=headers or {})
        servers.append((served, client))
        return LiveServer(served.url, dq, client)

    yield start
    for served, client in servers:
        client.close()
        served.stop()


@pytest.fixture
def live(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server()
