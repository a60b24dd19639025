"""Requests per key and scope, with the `limits` library (moving windows).

Counted in Redis when DOCQA_REDIS_URL is set, so every API replica shares one count; in
this process otherwise. When Redis does not answer within DOCQA_API__RATE_LIMITS__
REDIS_TIMEOUT_S, the in-process limiter takes over for a while (fail open: a Redis outage
costs at most that timeout once, never a rejected request or a 500).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from docqa.errors import DocqaError
from docqa.settings import RateLimitSettings

log = logging.getLogger("docqa.api.rate_limits")

# After Redis failed, how long the in-process limiter is used before Redis is tried again.
REDIS_RETRY_S = 10.0


class RateLimited(DocqaError):
    """A key (or client address) is past its rate limit; `retry_after_s` says when to retry."""

    status_code = 429
    error_type = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: str = ""
    retry_after_s: int = 0


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, redis_url: str | None = None) -> None:
        self.settings = settings
        self._rates: dict[str, list[RateLimitItem]] = {
            scope: parse_many(getattr(settings, scope))
            for scope in ("ask", "write", "admin", "anonymous")
        }
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            timeout = settings.redis_timeout_s
            storage: Storage = RedisStorage(
                redis_url,
                key_prefix="docqa:ratelimit",
                wrap_exceptions=True,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            self._shared = MovingWindowRateLimiter(storage)
        self._shared_down_until = 0.0
        self._lock = threading.Lock()

    def hit(self, identity: str, scope: str) -> Verdict:
        """Count one request of `identity` (a key id, or a client address) against the
        limits of `scope`; the verdict says whether it may go on."""
        if not self.settings.enabled:
            return Verdict(True)
        items = self._rates[scope]
        limiter = self._limiter()
        try:
            return _hit(limiter, items, identity)
        except Exception as exc:
            if limiter is self._local:
                raise
            self._mark_down(exc)
            return _hit(self._local, items, identity)

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._shared is None or time.monotonic() < self._shared_down_until:
            return self._local
        return self._shared

    def _mark_down(self, exc: Exception) -> None:
        with self._lock:
            first = time.monotonic() >= self._shared_down_until
            self._shared_down_until = time.monotonic() + REDIS_RETRY_S
        if first:
            log.warning(
                "rate limits: Redis did not answer (%s); counting in this process for %.0f s",
                exc,
                REDIS_RETRY_S,
            )


def _hit(limiter: MovingWindowRateLimiter, items: list[RateLimitItem], identity: str) -> Verdict:
    for item in items:
        if not limiter.hit(item, "docqa", identity):
            stats = limiter.get_window_stats(item, "docqa", identity)
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            return Verdict(False, str(item), retry)
    return Verdict(True)
