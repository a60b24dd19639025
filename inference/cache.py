"""Answer cache: in-process by default, Redis when DOCQA_REDIS_URL is set (shared by every
API replica). Keys include the index generation, so any ingest or delete invalidates them."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Cache(Protocol):
    """A string-to-JSON cache. A miss, an expired entry and an unreachable backend all read
    as None; `set` never raises (a cache must not fail a request)."""

    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any, ttl_s: int) -> None: ...

    def clear(self) -> None: ...


def cache_key(*parts: object) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str)
    return "docqa:answer:" + hashlib.sha256(raw.encode()).hexdigest()


class LocalCache:
    """Least-recently-used entries in this process, each with its own expiry."""

    def __init__(self, maxsize: int = 1024) -> None:
        from cachetools import LRUCache

        self._entries: LRUCache[str, tuple[float, str]] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            expires, raw = item
            if expires < time.monotonic():
                del self._entries[key]
                return None
        return json.loads(raw)

    def set(self, key: str, value: Any, ttl_s: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_s, json.dumps(value))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisCache:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def get(self, key: str) -> Any | None:
        import redis

        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            log.warning("answer cache unavailable (%s): %s", self.url, exc)
            return None
        return json.loads(raw) if raw is not None else None

    def set(self, key: str, value: Any, ttl_s: int) -> None:
        import redis

        try:
            self.client.set(key, json.dumps(value), ex=ttl_s)
        except redis.RedisError as exc:
            log.warning("answer cache unavailable (%s): %s", self.url, exc)

    def clear(self) -> None:
        import redis

        try:
            keys = list(self.client.scan_iter("docqa:answer:*"))
            if keys:
                self.client.delete(*keys)
        except redis.RedisError as exc:
            log.warning("answer cache unavailable (%s): %s", self.url, exc)
