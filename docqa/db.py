"""SQLAlchemy engines for the record store and the stages that keep tables beside it.

SQLite by default (one file in the data folder); any SQLAlchemy URL works, PostgreSQL is
tested. One engine per URL per process.
"""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    Table,
    TextClause,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from docqa.errors import ConfigurationError

_engines: dict[str, Engine] = {}
# Table sets (their MetaData, module-level singletons) already created per engine.
_created: weakref.WeakKeyDictionary[Engine, set[int]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every timestamp docqa writes is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def get_engine(url: str) -> Engine:
    """A shared engine for `url`; SQLite gets WAL and a busy timeout so the API, the CLI and
    Airflow tasks can use one file at once."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            _engines[url] = engine
        return engine


def _create(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise ConfigurationError(f"DOCQA_DATABASE_URL is not usable: {exc}") from exc


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create the tables, and add the columns and indexes a newer docqa declares to tables an
    older one made (each such column is nullable or has a server default, so old rows stay
    valid).
    Done once per engine and table set: stores are opened often (a collection's records,
    each index's keyword twin) and inspecting the schema each time costs round trips."""
    done = _created.setdefault(engine, set())
    if id(metadata) in done:
        return
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            metadata.create_all(engine)
            _add_missing_parts(engine, metadata)
            done.add(id(metadata))
            return
        except DBAPIError as exc:
            # Two processes starting on one new store (API workers, an Airflow task beside
            # the API) both see a table, column or index missing and both create it; the
            # second fails. Looking again finds it there.
            if _lost_schema_race(exc) and attempt + 1 < _SCHEMA_ATTEMPTS:
                continue
            if isinstance(exc, OperationalError):
                raise ConfigurationError(
                    f"cannot reach the record store at {engine.url.render_as_string()}: {exc.orig}"
                ) from exc
            raise


_SCHEMA_ATTEMPTS = 3


def _lost_schema_race(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return any(
        sign in message
        for sign in ("already exists", "duplicate column", "pg_type_typname_nsp_index")
    )


def _add_missing_parts(engine: Engine, metadata: MetaData) -> None:
    """The columns and indexes a newer docqa declares on tables an older one made
    (`create_all` makes them only with a new table)."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in present]
        if missing:
            with engine.begin() as conn:
                for column in missing:
                    conn.execute(_add_column(engine, table, column))
        indexed = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexed:
                index.create(engine)


def _add_column(engine: Engine, table: Table, column: Column[Any]) -> TextClause:
    preparer = engine.dialect.identifier_preparer
    kind = column.type.compile(dialect=engine.dialect)
    default = ""
    if column.server_default is not None:
        arg = column.server_default.arg  # type: ignore[attr-defined]
        literal = "'" + arg.replace("'", "''") + "'" if isinstance(arg, str) else arg
        default = f" DEFAULT {literal}"
    return text(
        f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN "
        f"{preparer.quote(column.name)} {kind}{default}"
    )
