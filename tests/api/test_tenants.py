"""Collections as tenants: documents belong to a named collection, and a key limited to
collections never sees another's documents, chunks, jobs or cached answers, whatever it
sends. Over real HTTP against a live server, with tampered filters."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from api.auth import KeyStore, Scope
from cli.main import app as cli
from docqa.domain import document_id_for

HR_TEXT = (
    "Parental leave policy. Employees receive sixteen weeks of paid parental leave. "
    "Requests go to the people team at least four weeks before the leave starts."
)
FINANCE_TEXT = (
    "Travel expense policy. Hotel nights are reimbursed up to 180 euros. "
    "The quarterly revenue target for the northern region is 4.2 million euros."
)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, embedder) -> Any:
    """A live server, one write key limited to `hr`, one to `finance`, an unlimited admin
    key; a file called policy.txt in each of the two collections."""
    from api.main import create_app
    from app import Docqa
    from docqa.settings import load_settings
    from tests.fakes.loopback import serve

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("tenants") / "data", api={"api_key": "bootstrap-secret"}
    )
    dq = Docqa(settings, embedder=embedder)
    store = KeyStore(settings.resolved_database_url)
    keys = {
        "hr": store.create("hr writer", Scope.WRITE, ["hr"])[1],
        "finance": store.create("finance writer", Scope.WRITE, ["finance"])[1],
        "admin": "bootstrap-secret",
    }
    served = serve(create_app(docqa=dq))
    client = httpx.Client(base_url=served.url, timeout=60)

    def upload(key: str, text: str, collection: str | None) -> dict[str, Any]:
        params = {"collection": collection} if collection else {}
        response = client.post(
            "/v1/documents",
            params=params,
            files=[("files", ("policy.txt", text.encode()))],
            headers=_auth(key),
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        for _ in range(1200):
            job = client.get(f"/v1/jobs/{accepted['job_id']}", headers=_auth(key)).json()
            if job["status"] in ("succeeded", "failed"):
                assert job["status"] == "succeeded", job
                return accepted
            import time

            time.sleep(0.1)
        raise AssertionError("upload not indexed in time")

    # The hr key names no collection: limited to one, it means that one.
    hr = upload(keys["hr"], HR_TEXT, None)
    finance = upload(keys["finance"], FINANCE_TEXT, "finance")
    yield {"client": client, "keys": keys, "hr": hr, "finance": finance, "settings": settings}
    client.close()
    served.stop()


def _finance_chunk_ids(tenants: Any) -> list[str]:
    client, keys = tenants["client"], tenants["keys"]
    found = client.post(
        "/v1/search",
        json={"query": "hotel nights reimbursed", "collection": "finance"},
        headers=_auth(keys["finance"]),
    ).json()["results"]
    assert found, "the finance collection should find its own document"
    return [r["chunk_id"] for r in found]


def test_the_same_file_name_is_two_documents_in_two_collections(tenants) -> None:
    hr, finance = tenants["hr"], tenants["finance"]
    assert hr["collection"] == "hr" and finance["collection"] == "finance"
    hr_id, finance_id = hr["documents"][0]["document_id"], finance["documents"][0]["document_id"]
    assert hr_id != finance_id
    assert hr_id == document_id_for("policy.txt", "hr")
    admin = _auth(tenants["keys"]["admin"])
    client = tenants["client"]
    for name, doc_id in (("hr", hr_id), ("finance", finance_id)):
        listed = client.get("/v1/documents", params={"collection": name}, headers=admin).json()
        assert [d["document_id"] for d in listed["documents"]] == [doc_id]
        assert listed["documents"][0]["collection"] == name
    # The default collection holds neither.
    assert client.get("/v1/documents", headers=admin).json()["total"] == 0


TAMPERED_FILTERS: list[dict[str, Any]] = [
    {},
    {"source": ["policy.txt"]},
    {"document_id": [document_id_for("policy.txt", "finance")]},
    {"document_id": [document_id_for("policy.txt", "finance"), document_id_for("policy.txt")]},
    {"type": ["txt"]},
]


@pytest.mark.parametrize("filters", TAMPERED_FILTERS)
def test_a_key_limited_to_hr_never_sees_finance_chunks(tenants, filters) -> None:
    client, key = tenants["client"], _auth(tenants["keys"]["hr"])
    finance_id = tenants["finance"]["documents"][0]["document_id"]
    body: dict[str, Any] = {"query": "hotel nights reimbursed revenue target euros"}
    if filters:
        body["filters"] = filters
    results = client.post("/v1/search", json=body, headers=key).json()["results"]
    assert all(r["document_id"] != finance_id for r in results)
    assert "euros" not in json.dumps(results)

    ask = {"question": "How much is reimbursed for a hotel night?", **body}
    ask.pop("query")
    answer = client.post("/v1/ask", json=ask, headers=key).json()
    assert "180" not in answer["answer"]
    assert all(c["document_id"] != finance_id for c in answer["citations"])

    chat = client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "What is the northern revenue target?"}],
            **({"filters": filters} if filters else {}),
        },
        headers=key,
    ).json()
    assert "4.2" not in chat["choices"][0]["message"]["content"]


def test_naming_another_collection_is_forbidden(tenants) -> None:
    client, key = tenants["client"], _auth(tenants["keys"]["hr"])
    calls = [
        ("POST", "/v1/search", {"json": {"query": "hotel", "collection": "finance"}}),
        ("POST", "/v1/ask", {"json": {"question": "hotel?", "collection": "finance"}}),
        (
            "POST",
            "/v1/chat/completions",
            {"json": {"model": "docqa:finance", "messages": [{"role": "user", "content": "x"}]}},
        ),
        ("GET", "/v1/documents", {"params": {"collection": "finance"}}),
        ("GET", "/v1/documents", {"params": {"collection": "default"}}),
        (
            "POST",
            "/v1/documents",
            {
                "params": {"collection": "finance"},
                "files": [("files", ("x.txt", b"planted into finance"))],
            },
        ),
        (
            "POST",
            "/v1/feedback",
            {"json": {"rating": "up", "question": "q", "answer": "a", "collection": "finance"}},
        ),
    ]
    for method, path, extra in calls:
        response = client.request(method, path, headers=key, **extra)
        assert response.status_code == 403, (path, response.text)
        error = response.json()["error"]
        assert error["type"] == "forbidden" and error["param"] == "collection"
    admin = _auth(tenants["keys"]["admin"])
    finance = client.get("/v1/documents", params={"collection": "finance"}, headers=admin).json()
    assert finance["total"] == 1  # the refused upload planted nothing


def test_another_collections_documents_chunks_and_jobs_are_not_found(tenants) -> None:
    client, key = tenants["client"], _auth(tenants["keys"]["hr"])
    finance = tenants["finance"]
    finance_id = finance["documents"][0]["document_id"]
    assert client.get(f"/v1/documents/{finance_id}", headers=key).status_code == 404
    assert client.delete(f"/v1/documents/{finance_id}", headers=key).status_code == 404
    assert client.get(f"/v1/jobs/{finance['job_id']}", headers=key).status_code == 404
    for chunk_id in _finance_chunk_ids(tenants):
        assert client.get(f"/v1/passages/{chunk_id}", headers=key).status_code == 404
    # Still there for its own tenant.
    mine = _auth(tenants["keys"]["finance"])
    assert client.get(f"/v1/documents/{finance_id}", headers=mine).json()["status"] == "indexed"


def test_each_collection_answers_from_its_own_documents_and_cache(tenants) -> None:
    client, admin = tenants["client"], _auth(tenants["keys"]["admin"])
    question = "How many weeks of paid leave, and how much for hotel nights?"
    answers = {}
    for name in ("hr", "finance", "hr", "finance"):  # twice: the second time from the cache
        answer = client.post(
            "/v1/ask", json={"question": question, "collection": name}, headers=admin
        ).json()
        cited = {c["document_id"] for c in answer["citations"]}
        assert cited <= {document_id_for("policy.txt", name)}, (name, answer)
        answers.setdefault(name, []).append(answer["answer"])
    assert answers["hr"][0] == answers["hr"][1] != answers["finance"][0]


def test_models_list_the_callers_collections(tenants) -> None:
    client = tenants["client"]
    hr = client.get("/v1/models", headers=_auth(tenants["keys"]["hr"])).json()
    assert [m["id"] for m in hr["data"]] == ["docqa", "docqa:hr"]
    admin = client.get("/v1/models", headers=_auth(tenants["keys"]["admin"])).json()
    assert [m["id"] for m in admin["data"]] == ["docqa", "docqa:finance", "docqa:hr"]
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "docqa:hr", "messages": [{"role": "user", "content": "parental leave?"}]},
        headers=_auth(tenants["keys"]["admin"]),
    ).json()
    assert chat["model"] == "docqa:hr"
    assert "sixteen weeks" in chat["choices"][0]["message"]["content"]


@pytest.mark.parametrize("bad", ["Finance", "../etc", "a" * 64, "hr finance", "-x", ""])
def test_a_bad_collection_name_is_a_clear_422(tenants, bad) -> None:
    client, admin = tenants["client"], _auth(tenants["keys"]["admin"])
    if bad:
        listed = client.get("/v1/documents", params={"collection": bad}, headers=admin)
        assert listed.status_code == 422, listed.text
        assert listed.json()["error"]["param"] == "collection"
    asked = client.post("/v1/search", json={"query": "x", "collection": bad}, headers=admin)
    assert asked.status_code == 422, asked.text
    assert asked.json()["error"]["param"] == "collection"


def test_the_cli_works_in_a_named_collection(tmp_path) -> None:
    doc = tmp_path / "policy.txt"
    doc.write_text(HR_TEXT)
    runner = CliRunner()

    def docqa(*args: str) -> Any:
        return runner.invoke(cli, ["--data-dir", str(tmp_path / "data"), *args])

    made = docqa("--collection", "hr", "ingest", str(doc), "--json")
    assert made.exit_code == 0, made.output
    row = json.loads(made.output)[0]
    assert row["document_id"] == document_id_for(row["source"], "hr")
    found = docqa("--collection", "hr", "search", "parental leave", "--json")
    assert json.loads(found.output)["results"], found.output
    elsewhere = docqa("search", "parental leave", "--json")
    assert json.loads(elsewhere.output)["results"] == []
    listed = docqa("--collection", "hr", "documents", "list", "--json")
    assert [d["collection"] for d in json.loads(listed.output)] == ["hr"]
    rebuilt = docqa("--collection", "hr", "reindex", "--grace-s", "0")
    assert rebuilt.exit_code == 0, rebuilt.output
    found = docqa("--collection", "hr", "search", "parental leave", "--json")
    assert json.loads(found.output)["results"], found.output
    bad = docqa("--collection", "HR!", "documents", "list")
    assert bad.exit_code == 2 and "not a collection name" in bad.output


def test_keys_refuse_a_bad_collection_name(tmp_path) -> None:
    from docqa.errors import DocqaError
    from docqa.settings import load_settings

    store = KeyStore(load_settings(data_dir=tmp_path).resolved_database_url)
    with pytest.raises(DocqaError, match="not a collection name"):
        store.create("x", Scope.ASK, ["Finance Team"])


def test_an_older_record_store_gains_the_collection_column(tmp_path) -> None:
    """A database made before collections: its documents are the default collection's."""
    from sqlalchemy import create_engine, text

    from ingestion.records import RecordStore

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE docqa_documents (document_id VARCHAR(64) PRIMARY KEY, "
                "source TEXT NOT NULL, file_type VARCHAR(16) NOT NULL, content_hash VARCHAR(64),"
                " index_fingerprint TEXT, model VARCHAR(512), status VARCHAR(16) NOT NULL, "
                "error TEXT, reason VARCHAR(64), warnings JSON NOT NULL, chunk_ids JSON NOT NULL,"
                " pending_chunk_ids JSON NOT NULL, stale_chunk_ids JSON NOT NULL, size_bytes "
                "INTEGER, stored_path TEXT, created_at DATETIME NOT NULL, updated_at DATETIME "
                "NOT NULL, indexed_at DATETIME)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO docqa_documents VALUES ('doc_old', 'old.txt', 'txt', NULL, NULL, "
                "NULL, 'indexed', NULL, NULL, '[]', '[\"c1\"]', '[]', '[]', 3, NULL, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', NULL)"
            )
        )
    engine.dispose()
    default = RecordStore(url)
    assert [r.source for r in default.list()] == ["old.txt"]
    assert default.list()[0].collection == "default"
    assert RecordStore(url, "hr").list() == []


def test_naming_a_collection_that_does_not_exist_creates_nothing(tenants) -> None:
    from retrieval.aliases import AliasStore

    client, admin = tenants["client"], _auth(tenants["keys"]["admin"])
    searched = client.post(
        "/v1/search", json={"query": "leave", "collection": "ghost"}, headers=admin
    )
    assert searched.status_code == 200 and searched.json()["results"] == []
    asked = client.post(
        "/v1/ask", json={"question": "leave?", "collection": "ghost"}, headers=admin
    )
    assert asked.json()["found"] is False
    listed = client.get("/v1/documents", params={"collection": "ghost"}, headers=admin)
    assert listed.json()["total"] == 0
    passage = client.get(
        "/v1/passages/doc_x:1:00001", params={"collection": "ghost"}, headers=admin
    )
    assert passage.status_code == 404
    settings = tenants["settings"]
    assert AliasStore(settings.resolved_database_url).get(f"{settings.collection}.ghost") is None
