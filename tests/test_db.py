"""The record store's schema set-up, where several processes start on one new store."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Index, Integer, MetaData, Table, event, inspect

from docqa.db import create_tables, get_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'docqa.sqlite'}"
    return str(request.getfixturevalue("pg_database").url)


def test_a_table_another_process_creates_first_is_found_not_an_error(store_url):
    """Two API workers starting on a new store both see the table missing; the one that
    creates it second must look again, not fail its start-up (seen in CI with SQLite)."""
    metadata = MetaData()
    table = Table("raced", metadata, Column("id", Integer, primary_key=True))
    rival_turns = []

    @event.listens_for(table, "before_create")
    def _rival_creates_it_first(target, connection, **_kw):  # type: ignore[no-untyped-def]
        if not rival_turns:
            rival_turns.append(1)
            connection.exec_driver_sql("CREATE TABLE raced (id INTEGER PRIMARY KEY)")

    engine = get_engine(store_url)
    create_tables(engine, metadata)

    assert rival_turns == [1]
    assert "raced" in inspect(engine).get_table_names()


def test_an_index_a_newer_docqa_declares_is_added_to_an_older_table(store_url):
    metadata = MetaData()
    table = Table(
        "aged", metadata, Column("id", Integer, primary_key=True), Column("generation", Integer)
    )
    Index("ix_aged_generation", table.c.generation)
    engine = get_engine(store_url)
    with engine.begin() as conn:  # the table as an older docqa made it, without the index
        conn.exec_driver_sql("CREATE TABLE aged (id INTEGER PRIMARY KEY, generation INTEGER)")

    create_tables(engine, metadata)

    assert [i["name"] for i in inspect(engine).get_indexes("aged")] == ["ix_aged_generation"]
