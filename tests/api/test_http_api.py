"""The HTTP API over real HTTP: upload -> job -> ask, documents, errors and schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from docqa.errors import ConfigurationError
from docqa.settings import load_settings
from tests.documents import LAYOUT_TEXT, write_pdf


def _assert_error(response, status: int, type_: str | None = None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == status
    assert body["error"]["message"]
    if type_:
        assert body["error"]["type"] == type_
    return body["error"]


def test_upload_poll_ask_round_trip_with_page_citations(live, tmp_path):
    pdf = write_pdf(tmp_path / "layout.pdf", ["Cover page of the report.", LAYOUT_TEXT])
    notes = tmp_path / "notes.md"
    notes.write_text("# Office\n\nThe Copenhagen office is on Strandgade 93.\n")
    with pdf.open("rb") as a, notes.open("rb") as b:
        r = live.client.post(
            "/v1/documents", files=[("files", ("layout.pdf", a)), ("files", ("notes.md", b))]
        )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "queued" and len(accepted["documents"]) == 2

    job = live.wait_for_job(accepted["job_id"])
    assert job["status"] == "succeeded"
    assert {d["outcome"] for d in job["documents"]} == {"added"}

    answer = live.client.post("/v1/ask", json={"question": "What is LayoutParser?"}).json()
    assert answer["found"]
    assert "LayoutParser" in answer["answer"]
    cited = answer["citations"][0]
    assert cited["source"] == "layout.pdf" and cited["page"] == 2
    assert {"retrieve", "generate", "total"} <= set(answer["timings_ms"])

    doc_id = cited["document_id"]
    doc = live.client.get(f"/v1/documents/{doc_id}").json()
    assert doc["status"] == "indexed" and doc["chunk_count"] >= 1
    listing = live.client.get("/v1/documents").json()
    assert listing["total"] == 2

    results = live.client.post("/v1/search", json={"query": "Strandgade", "top_k": 1}).json()[
        "results"
    ]
    assert results[0]["source"] == "notes.md" and "Strandgade" in results[0]["text"]

    r = live.client.delete(f"/v1/documents/{doc_id}")
    assert r.status_code == 200 and r.json()["chunks_removed"] >= 1
    _assert_error(live.client.get(f"/v1/documents/{doc_id}"), 404, "not_found")
    after = live.client.post("/v1/ask", json={"question": "What is LayoutParser?"}).json()
    assert all(c["source"] != "layout.pdf" for c in after["citations"])


def test_reupload_of_same_content_is_unchanged_and_bad_files_fail_per_document(live, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("The night shift starts at ten in the evening.")
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n  ")
    files = [
        ("files", ("good.txt", good.read_bytes())),
        ("files", ("blank.txt", blank.read_bytes())),
    ]
    job = live.wait_for_job(live.client.post("/v1/documents", files=files).json()["job_id"])
    outcomes = {d["source"]: d for d in job["documents"]}
    assert job["status"] == "failed"  # one document failed; the other is indexed
    assert outcomes["good.txt"]["outcome"] == "added"
    assert outcomes["blank.txt"]["outcome"] == "failed"
    assert "whitespace" in outcomes["blank.txt"]["error"]
    failed = live.client.get("/v1/documents", params={"status": "failed"}).json()["documents"]
    assert [d["source"] for d in failed] == ["blank.txt"] and failed[0]["reason"] == "empty"

    again = live.client.post("/v1/documents", files=[("files", ("good.txt", good.read_bytes()))])
    job = live.wait_for_job(again.json()["job_id"])
    assert job["status"] == "succeeded" and job["documents"][0]["outcome"] == "unchanged"


@pytest.mark.parametrize(
    "files, status, words",
    [
        ([("files", ("virus.exe", b"MZ"))], 415, "unsupported file type"),
        ([("files", ("empty.txt", b""))], 400, "empty"),
        ([("files", ("", b"text"))], 422, None),
        ([("other", ("a.txt", b"text"))], 422, "files"),
    ],
)
def test_bad_uploads_get_clear_errors_and_change_nothing(live, files, status, words):
    error = _assert_error(live.client.post("/v1/documents", files=files), status)
    if words:
        assert words in error["message"]
    assert live.client.get("/v1/documents").json()["total"] == 0


def test_upload_over_the_size_limit_is_413(start_server):
    server = start_server(api={"max_upload_mb": 0.001})
    r = server.client.post("/v1/documents", files=[("files", ("big.txt", b"x" * 5000))])
    _assert_error(r, 413, "payload_too_large")


def test_upload_that_is_not_multipart_is_415(live):
    r = live.client.post("/v1/documents", json={"files": ["a.txt"]})
    _assert_error(r, 415)


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/ask", {"question": ""}, "question"),
        ("/v1/ask", {"question": "   "}, "question"),
        ("/v1/ask", {"question": "ok", "top_k": 0}, "top_k"),
        ("/v1/ask", {"question": "ok", "top_k": "many"}, "top_k"),
        ("/v1/ask", {"question": "ok", "filters": {"colour": "red"}}, "filters.colour"),
        ("/v1/ask", {"questoin": "typo"}, "question"),
        ("/v1/search", {"query": "x" * 5000}, "query"),
        ("/v1/search", {}, "query"),
    ],
)
def test_bad_requests_are_422_with_the_field_named(live, path, body, param):
    error = _assert_error(live.client.post(path, json=body), 422, "invalid_request")
    assert error["param"] == param or param in error["message"]


def test_malformed_json_body_is_422_not_500(live):
    r = live.client.post(
        "/v1/ask", content=b"{not json", headers={"content-type": "application/json"}
    )
    _assert_error(r, 422)


def test_unknown_ids_are_404(live):
    _assert_error(live.client.get("/v1/documents/doc_nope"), 404, "not_found")
    _assert_error(live.client.delete("/v1/documents/doc_nope"), 404, "not_found")
    _assert_error(live.client.get("/v1/jobs/job_nope"), 404, "not_found")
    _assert_error(live.client.get("/v1/nothing-here"), 404)


def test_not_found_answer_when_nothing_relevant(live):
    body = live.client.post("/v1/ask", json={"question": "Who won the 1998 World Cup?"}).json()
    assert body == {
        **body,
        "found": False,
        "citations": [],
        "answer": "I could not find this in the documents.",
    }


def test_api_key_is_required_when_configured(start_server):
    server = start_server(api={"api_key": "s3cret"})
    _assert_error(server.client.get("/v1/documents"), 401, "unauthorized")
    ok = server.client.get("/v1/documents", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert server.client.get("/healthz").status_code == 200


def test_serving_on_a_network_address_without_a_key_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="DOCQA_API__API_KEY"):
        load_settings(data_dir=tmp_path, api={"host": "0.0.0.0"})
    assert load_settings(data_dir=tmp_path, api={"host": "0.0.0.0", "api_key": "k"})


def test_healthz_reports_components(live):
    body = live.client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["components"] == {"record_store": "ok", "vector_store": "ok"}
    assert body["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def _resolve(schema: dict, spec: dict) -> dict:
    """Inline $refs so jsonschema can validate against a component."""
    text = json.dumps(schema)
    for name, component in spec["components"]["schemas"].items():
        text = text.replace(
            json.dumps({"$ref": f"#/components/schemas/{name}"}), json.dumps(component)
        )
    resolved = json.loads(text)
    return resolved if "$ref" not in text else _resolve(resolved, spec)


def test_responses_match_the_openapi_schema(live, tmp_path):
    spec = live.client.get("/openapi.json").json()
    doc = tmp_path / "a.md"
    doc.write_text("# Parking\n\nVisitors park in garage B.\n")
    upload = live.client.post("/v1/documents", files=[("files", ("a.md", doc.read_bytes()))])
    job_id = upload.json()["job_id"]
    live.wait_for_job(job_id)
    doc_id = upload.json()["documents"][0]["document_id"]
    cases = [
        ("post", "/v1/documents", "202", upload),
        ("get", "/v1/jobs/{job_id}", "200", live.client.get(f"/v1/jobs/{job_id}")),
        ("get", "/v1/documents", "200", live.client.get("/v1/documents")),
        ("get", "/v1/documents/{document_id}", "200", live.client.get(f"/v1/documents/{doc_id}")),
        ("post", "/v1/search", "200", live.client.post("/v1/search", json={"query": "parking"})),
        (
            "post",
            "/v1/ask",
            "200",
            live.client.post("/v1/ask", json={"question": "Where do visitors park?"}),
        ),
        ("post", "/v1/ask", "422", live.client.post("/v1/ask", json={})),
        ("get", "/v1/documents/{document_id}", "404", live.client.get("/v1/documents/x")),
        (
            "post",
            "/v1/documents",
            "415",
            live.client.post("/v1/documents", files=[("files", ("a.exe", b"x"))]),
        ),
        (
            "delete",
            "/v1/documents/{document_id}",
            "200",
            live.client.delete(f"/v1/documents/{doc_id}"),
        ),
    ]
    for method, path, status, response in cases:
        assert str(response.status_code) == status, (path, response.text)
        declared = spec["paths"][path][method]["responses"]
        assert status in declared, f"{method.upper()} {path} does not declare {status}"
        schema = declared[status]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), _resolve(schema, spec))


def test_an_interrupted_upload_job_is_resumed_at_start(make_docqa, start_server, tmp_path):
    from ingestion.jobs import new_job_id
    from ingestion.uploads import IncomingFile, accept_uploads

    dq = make_docqa()
    doc = tmp_path / "shift.txt"
    doc.write_text("The night shift starts at ten in the evening.")
    with doc.open("rb") as fh:
        items = accept_uploads(dq.settings, [IncomingFile("shift.txt", fh)])
    job_id = new_job_id()
    dq.records.mark_queued(
        items[0].document_id, source="shift.txt", file_type="txt", stored_path=str(items[0].path)
    )
    dq.jobs.create(job_id, [items[0].document_id])  # the server died before running it

    server = start_server(docqa=dq)
    job = server.wait_for_job(job_id)
    assert job["status"] == "succeeded" and job["documents"][0]["outcome"] == "added"
