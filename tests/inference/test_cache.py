"""The Cache contract, against the in-process cache and a real Redis."""

from __future__ import annotations

import uuid

import pytest

from inference.cache import LocalCache, RedisCache, cache_key


@pytest.fixture(params=["local", "redis"])
def cache(request):
    if request.param == "redis":
        c = RedisCache(request.getfixturevalue("redis_url"))
        yield c
        c.clear()
    else:
        yield LocalCache(maxsize=4)


def test_set_then_get_round_trips_json(cache):
    key = cache_key("q", uuid.uuid4().hex)
    assert cache.get(key) is None
    cache.set(key, {"answer": "42", "citations": [1, 2]}, ttl_s=60)
    assert cache.get(key) == {"answer": "42", "citations": [1, 2]}


def test_expired_entries_read_as_missing(cache):
    key = cache_key("expiring", uuid.uuid4().hex)
    cache.set(key, "x", ttl_s=0)
    assert cache.get(key) is None


def test_clear_forgets_everything(cache):
    key = cache_key("clear", uuid.uuid4().hex)
    cache.set(key, 1, ttl_s=60)
    cache.clear()
    assert cache.get(key) is None


def test_unreachable_redis_is_a_miss_not_an_error():
    cache = RedisCache("redis://127.0.0.1:1/0")
    cache.set("k", 1, ttl_s=10)
    assert cache.get("k") is None


def test_answers_are_cached_until_the_index_changes(make_docqa, tmp_path):
    dq = make_docqa()
    doc = tmp_path / "a.md"
    doc.write_text("# Gate\n\nThe gate code is 4711.\n")
    dq.indexer().ingest_file(doc)
    first = dq.answering.ask("What is the gate code?")
    second = dq.answering.ask("What is the gate code?")
    assert not first.cached and second.cached and second.text == first.text
    doc.write_text("# Gate\n\nThe gate code changed to 9000.\n")
    dq.indexer().ingest_file(doc)
    third = dq.answering.ask("What is the gate code?")
    assert not third.cached and "9000" in third.text
