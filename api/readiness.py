"""Is docqa ready to answer? Each dependency checked with a short timeout, its latency
measured. Required ones (record store, vector store, and vLLM and Airflow when they are
configured) make the service not ready when down; Redis is optional (the answer cache and
the rate limits fall back to this process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from app import Docqa

CHECK_TIMEOUT_S = 2.0


@dataclass
class Check:
    name: str
    group: str  # vLLM replicas form one group: any one up serves
    required: bool
    up: bool
    latency_ms: float
    error: str | None = None


def _timed(name: str, required: bool, probe: Callable[[], object]) -> Check:
    group = name.split("_")[0] if name.startswith("vllm") else name
    t0 = time.perf_counter()
    try:
        probe()
        return Check(name, group, required, True, _ms(t0))
    except Exception as exc:  # noqa: BLE001 - a check reports failures, it does not raise
        error = f"{type(exc).__name__}: {exc}"[:300]
        return Check(name, group, required, False, _ms(t0), error)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def _get(url: str, headers: dict[str, str] | None = None) -> None:
    response = httpx.get(url, timeout=CHECK_TIMEOUT_S, headers=headers or {})
    if response.status_code >= 400:
        raise RuntimeError(f"HTTP {response.status_code}")


def check_all(docqa: Docqa) -> list[Check]:
    """Every dependency, checked at once (in parallel: one slow server does not add up)."""
    settings = docqa.settings
    probes: list[tuple[str, bool, Callable[[], object]]] = [
        ("record_store", True, docqa.records.count),
        ("vector_store", True, lambda: docqa.indexes.current().vectors.count()),
    ]
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=CHECK_TIMEOUT_S,
            socket_connect_timeout=CHECK_TIMEOUT_S,
        )
        probes.append(("redis", False, client.ping))
    if settings.answer.generator == "vllm":
        headers = (
            {"Authorization": f"Bearer {settings.vllm.api_key}"} if settings.vllm.api_key else None
        )
        for n, url in enumerate(settings.vllm.urls, start=1):
            name = "vllm" if len(settings.vllm.urls) == 1 else f"vllm_{n}"
            probes.append(
                (name, True, lambda u=url: _get(f"{u.rstrip('/')}/v1/models", headers))  # type: ignore[misc]
            )
    if settings.airflow.url:
        url = settings.airflow.url.rstrip("/")
        probes.append(("airflow", True, lambda: _get(f"{url}/api/v2/monitor/health")))
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return list(pool.map(lambda p: _timed(*p), probes))


def ready(checks: list[Check]) -> bool:
    """Every required group has a member up."""
    groups = {c.group for c in checks if c.required}
    return all(any(c.up for c in checks if c.group == g) for g in groups)
