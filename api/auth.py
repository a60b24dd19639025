"""Who is calling: API keys with a scope and, optionally, the collections they may use.

A key is shown once, when `docqa keys create` makes it, and stored only as a SHA-256
digest in the record store's database (keys are 256-bit random secrets, so a plain digest
cannot be brute-forced; no salt or slow hash is needed). `DOCQA_API__API_KEY` is a
bootstrap admin key that lives in the environment only. While neither exists,
authentication is off, which the settings allow on loopback only.

Scopes nest: `ask` (search, ask, chat completions, models, feedback) < `write` (ask, plus
upload, delete, sync) < `admin` (everything: keys, evaluation, re-index).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, insert, select, update

from docqa.db import as_utc, create_tables, get_engine, utcnow
from docqa.domain import check_collection_name
from docqa.errors import DocqaError, NotFoundError

metadata = MetaData()

api_keys = Table(
    "docqa_api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("collections", JSON),  # null: every collection
    Column("key_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

KEY_PREFIX = "dq"
# How long a process trusts what it read from the key store: a revoked key stops working
# within this many seconds on every API replica, without a query per request.
KEY_CACHE_S = 5.0


class Scope(IntEnum):
    ASK = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Scope:
        try:
            return cls[name.upper()]
        except KeyError:
            raise DocqaError(
                f"unknown scope {name!r}: use ask, write or admin", param="scope"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    key_id: str  # "bootstrap", a stored key's id, or "anonymous" with auth off
    name: str
    scope: Scope
    collections: tuple[str, ...] | None = None  # None: every collection

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


ANONYMOUS = Principal("anonymous", "authentication off", Scope.ADMIN)
BOOTSTRAP = Principal("bootstrap", "DOCQA_API__API_KEY", Scope.ADMIN)


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    name: str
    scope: Scope
    collections: list[str] | None
    created_at: datetime
    revoked_at: datetime | None
    key_sha256: str

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def principal(self) -> Principal:
        collections = tuple(self.collections) if self.collections is not None else None
        return Principal(self.key_id, self.name, self.scope, collections)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """API keys in the record store's database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.engine = get_engine(url)
        create_tables(self.engine, metadata)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, StoredKey | None]] = {}
        self._any_active: tuple[float, bool] | None = None

    def create(
        self, name: str, scope: Scope, collections: list[str] | None = None
    ) -> tuple[StoredKey, str]:
        """A new key; returns it with the secret, which is never stored or shown again."""
        name = name.strip()
        if not name or len(name) > 200:
            raise DocqaError("a key needs a name of 1 to 200 characters", param="name")
        for collection in collections or ():
            try:
                check_collection_name(collection)
            except ValueError as exc:
                raise DocqaError(str(exc), param="collection") from exc
        key_id = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    name=name,
                    scope=scope.label,
                    collections=collections,
                    key_sha256=_digest(secret),
                    created_at=now,
                )
            )
        self.forget()
        return StoredKey(key_id, name, scope, collections, now, None, _digest(secret)), secret

    def list(self) -> list[StoredKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [_stored(r) for r in rows]

    def revoke(self, key_id: str) -> StoredKey:
        """:raises NotFoundError: no such key."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            ).rowcount
        key = self._get(key_id)
        if key is None:
            raise NotFoundError(f"no key with id {key_id!r} (see `docqa keys list`)")
        if not changed and key.revoked_at is None:  # pragma: no cover - a race at most
            raise DocqaError(f"key {key_id} could not be revoked; try again")
        self.forget()
        return key

    def any_active(self) -> bool:
        """Whether any stored key is active: then authentication is on."""
        now = time.monotonic()
        cached = self._any_active
        if cached is not None and now - cached[0] < KEY_CACHE_S:
            return cached[1]
        with self.engine.connect() as conn:
            found = conn.execute(
                select(api_keys.c.key_id).where(api_keys.c.revoked_at.is_(None)).limit(1)
            ).first()
        self._any_active = (now, found is not None)
        return found is not None

    def verify(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None when it is not an active key."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1].isalnum():
            return None
        key = self._cached(parts[1])
        if key is None or not key.active:
            return None
        if not hmac.compare_digest(_digest(presented).encode(), key.key_sha256.encode()):
            return None
        return key.principal()

    def forget(self) -> None:
        """Drop what this process cached (after a write here; other processes wait out
        KEY_CACHE_S)."""
        with self._lock:
            self._cache.clear()
            self._any_active = None

    def _cached(self, key_id: str) -> StoredKey | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < KEY_CACHE_S:
            return hit[1]
        key = self._get(key_id)
        with self._lock:
            if len(self._cache) > 10_000:  # unknown ids are cached too: bound the memory
                self._cache.clear()
            self._cache[key_id] = (now, key)
        return key

    def _get(self, key_id: str) -> StoredKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        return _stored(row) if row else None


def _stored(row: object) -> StoredKey:
    data = dict(row._mapping)  # type: ignore[attr-defined]
    created = as_utc(data["created_at"])
    assert created is not None
    return StoredKey(
        key_id=data["key_id"],
        name=data["name"],
        scope=Scope[data["scope"].upper()],
        collections=list(data["collections"]) if data["collections"] is not None else None,
        created_at=created,
        revoked_at=as_utc(data["revoked_at"]),
        key_sha256=data["key_sha256"],
    )


def authenticate(presented: str | None, bootstrap: str | None, keys: KeyStore) -> Principal:
    """The caller, from the bearer token of a request.

    :raises Unauthorized: authentication is on and the key is missing or unknown.
    """
    if not bootstrap and not keys.any_active():
        return ANONYMOUS
    if not presented:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    # Compared as bytes: a token with non-ASCII characters is simply a wrong key.
    if bootstrap and hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), bootstrap.encode("utf-8", "surrogatepass")
    ):
        return BOOTSTRAP
    principal = keys.verify(presented)
    if principal is None:
        raise Unauthorized("wrong or revoked API key")
    return principal


class Unauthorized(DocqaError):
    status_code = 401
    error_type = "unauthorized"


class Forbidden(DocqaError):
    status_code = 403
    error_type = "forbidden"


def authorize(principal: Principal, needed: Scope) -> None:
    """:raises Forbidden: the key's scope is below what the route needs."""
    if principal.scope < needed:
        raise Forbidden(
            f"this key has scope {principal.scope.label!r}; this request needs "
            f"{needed.label!r} (`docqa keys create --scope {needed.label}`)"
        )


def authorize_collection(principal: Principal, collection: str) -> None:
    """:raises Forbidden: the key is limited to other collections."""
    if not principal.may_use(collection):
        allowed = ", ".join(principal.collections or ())
        raise Forbidden(
            f"this key may not use collection {collection!r} (it is limited to: {allowed})",
            param="collection",
        )
