"""Rate limits per key: 429 with Retry-After exactly past the limit, counted in Redis when
configured and in process when Redis is gone (fail open, no 5xx)."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from api.auth import KeyStore, Scope
from api.main import create_app
from api.rate_limits import RateLimiter
from docqa.settings import RateLimitSettings
from tests.conftest import _missing_service
from tests.fakes.loopback import free_port, serve

LIMITS = {"ask": "3/minute", "write": "5/minute", "admin": "100/minute"}


@pytest.fixture
def private_redis():
    """A Redis server of this test's own, on a free port, that the test may stop."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing_service("redis-server is not installed; scripts/ensure-services.sh installs it")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    import redis

    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield url, proc
    proc.kill()
    proc.wait()


def _server(make_docqa, **overrides):
    dq = make_docqa(api={"rate_limits": LIMITS}, **overrides)
    _, key = KeyStore(dq.settings.resolved_database_url).create("limited", Scope.ASK)
    app = create_app(docqa=dq)
    served = serve(app)
    client = httpx.Client(
        base_url=served.url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    )
    return served, client, dq


def _search(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/search", json={"query": "canteen"})


def test_the_request_past_the_limit_gets_429_with_retry_after(make_docqa) -> None:
    served, client, dq = _server(make_docqa)
    try:
        assert [_search(client).status_code for _ in range(3)] == [200, 200, 200]
        refused = _search(client)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["type"] == "rate_limited" and "3 per 1 minute" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another key is counted apart.
        _, other = KeyStore(dq.settings.resolved_database_url).create("other", Scope.ASK)
        fresh = client.post(
            "/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {other}"}
        )
        assert fresh.status_code == 200
    finally:
        client.close()
        served.stop()


@pytest.mark.services
def test_limits_are_shared_through_redis_and_fail_open_when_it_stops(
    make_docqa, private_redis
) -> None:
    url, redis_proc = private_redis
    served, client, _ = _server(make_docqa, redis_url=url)
    try:
        assert [_search(client).status_code for _ in range(3)] == [200, 200, 200]
        assert _search(client).status_code == 429
        import redis

        assert redis.Redis.from_url(url).keys("docqa:ratelimit*")  # counted in Redis

        redis_proc.kill()  # Redis goes away mid-run
        redis_proc.wait()
        statuses = []
        for _ in range(5):
            t0 = time.monotonic()
            statuses.append(_search(client).status_code)
            assert time.monotonic() - t0 < 10  # a bounded wait, never a hang
        # The in-process limiter takes over with a fresh count: 3 more, then 429 again.
        assert statuses == [200, 200, 200, 429, 429]
    finally:
        client.close()
        served.stop()


def test_a_redis_that_never_answered_costs_no_request() -> None:
    limiter = RateLimiter(
        RateLimitSettings(ask="2/minute", redis_timeout_s=0.2),
        f"redis://127.0.0.1:{free_port()}/0",
    )
    verdicts = [limiter.hit("key:a", "ask").allowed for _ in range(3)]
    assert verdicts == [True, True, False]
