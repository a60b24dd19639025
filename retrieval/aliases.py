"""Which collection serves: an alias row per serving index, switched in one transaction.

Queries read the alias on every call, so a re-index that switches it is picked up by every
process (the API, the CLI, Airflow workers) without a restart. The row remembers the
previous collection and when the switch happened, for the grace period before the old
collection is dropped. The table lives in the record store's database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from docqa.db import as_utc, create_tables, get_engine, utcnow

metadata = MetaData()

aliases = Table(
    "docqa_index_aliases",
    metadata,
    Column("alias", String(512), primary_key=True),
    Column("collection", String(512), nullable=False),
    Column("previous", String(512)),
    Column("switched_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class AliasState:
    collection: str
    previous: str | None
    switched_at: datetime


class AliasStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)
        create_tables(self.engine, metadata)

    def get(self, alias: str) -> str | None:
        """The collection `alias` points at, or None before the first one was created."""
        with self.engine.connect() as conn:
            row = conn.execute(select(aliases.c.collection).where(aliases.c.alias == alias)).first()
        return row[0] if row else None

    def state(self, alias: str) -> AliasState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(aliases).where(aliases.c.alias == alias)).first()
        if row is None:
            return None
        switched_at = as_utc(row.switched_at)
        assert switched_at is not None
        return AliasState(row.collection, row.previous, switched_at)

    def set_first(self, alias: str, collection: str) -> str:
        """Point a new alias at `collection`, unless another process created it meanwhile.
        Returns the collection the alias points at now: this one, or the other's."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(aliases).values(alias=alias, collection=collection, switched_at=utcnow())
                )
            return collection
        except IntegrityError:
            current = self.get(alias)
            if current is None:  # pragma: no cover - the row that conflicted was deleted
                return self.set_first(alias, collection)
            return current

    def set(self, alias: str, collection: str) -> str | None:
        """Point `alias` at `collection` in one transaction; returns the previous target."""
        with self.engine.begin() as conn:
            return self.set_in(conn, alias, collection)

    @staticmethod
    def set_in(conn: Connection, alias: str, collection: str) -> str | None:
        """`set` inside the caller's transaction, so other rows can change with the switch."""
        row = conn.execute(
            select(aliases.c.collection).where(aliases.c.alias == alias).with_for_update()
        ).first()
        previous: Any = row[0] if row else None
        if row:
            conn.execute(
                update(aliases)
                .where(aliases.c.alias == alias)
                .values(collection=collection, previous=previous, switched_at=utcnow())
            )
        else:
            conn.execute(
                insert(aliases).values(alias=alias, collection=collection, switched_at=utcnow())
            )
        return previous  # type: ignore[no-any-return]
