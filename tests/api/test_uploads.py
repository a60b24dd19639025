"""Uploads through a real server: a ZIP bomb fails its document and nothing else, a
rejected upload changes nothing even after its files were placed, delete takes the stored
original with it, and a start clears what a crash left in the uploads folder."""

from __future__ import annotations

import os

import psutil

from docqa.errors import ServiceUnavailable
from tests.documents import write_docx_bomb


def test_a_zip_bomb_upload_is_accepted_then_fails_over_budget(live, tmp_path):
    bomb = write_docx_bomb(tmp_path / "report.docx", 600 << 20)
    server = psutil.Process(os.getpid())  # the loopback server runs in this process
    before = server.memory_info().rss

    r = live.client.post("/v1/documents", files=[("files", ("report.docx", bomb.read_bytes()))])
    assert r.status_code == 202
    job = live.wait_for_job(r.json()["job_id"])

    assert job["status"] == "failed"
    [doc] = job["documents"]
    assert doc["reason"] == "over_budget" and "unpacks to 600." in doc["error"]
    assert server.memory_info().rss - before < 200 << 20
    ok = live.client.post("/v1/documents", files=[("files", ("ok.txt", b"The canteen opens."))])
    assert live.wait_for_job(ok.json()["job_id"])["status"] == "succeeded"  # still serving


def test_a_rejected_upload_changes_nothing_even_after_its_files_were_placed(live, monkeypatch):
    first = live.client.post("/v1/documents", files=[("files", ("a.txt", b"Version one."))])
    live.wait_for_job(first.json()["job_id"])
    before = live.docqa.records.get(first.json()["documents"][0]["document_id"])
    stored = before.stored_path

    def store_down(*args, **kwargs):
        raise ServiceUnavailable("the record store does not answer")

    monkeypatch.setattr(live.docqa.jobs, "create", store_down)
    r = live.client.post(
        "/v1/documents", files=[("files", ("a.txt", b"Version two.")), ("files", ("b.txt", b"B"))]
    )

    assert r.status_code == 503
    assert open(stored, "rb").read() == b"Version one."  # the replaced original is back
    after = live.docqa.records.list()
    assert [(d.source, d.status, d.stored_path) for d in after] == [
        ("a.txt", before.status, stored)
    ]
    uploads = live.docqa.settings.uploads_dir
    assert sorted(p.name for p in uploads.rglob("*") if p.is_file()) == ["a.txt"]


def test_the_same_file_name_twice_in_one_upload_is_refused(live):
    r = live.client.post(
        "/v1/documents", files=[("files", ("a.txt", b"one")), ("files", ("a.txt", b"two"))]
    )
    assert r.status_code == 400 and "given more than once" in r.json()["error"]["message"]
    assert live.client.get("/v1/documents").json()["total"] == 0


def test_delete_takes_the_stored_original_with_it(live):
    r = live.client.post("/v1/documents", files=[("files", ("memo.txt", b"Desks are shared."))])
    live.wait_for_job(r.json()["job_id"])
    document_id = r.json()["documents"][0]["document_id"]
    stored = live.docqa.records.get(document_id).stored_path
    assert os.path.exists(stored)

    assert live.client.delete(f"/v1/documents/{document_id}").status_code == 200
    assert not os.path.exists(stored)
    assert live.client.get(f"/v1/documents/{document_id}").status_code == 404


def test_a_start_removes_staging_leftovers_of_a_crash(make_docqa, start_server):
    dq = make_docqa()
    staging = dq.settings.uploads_dir / ".incoming-crashed"
    staging.mkdir(parents=True)
    (staging / "0000").write_bytes(b"half of an upload")

    start_server(docqa=dq)

    assert not staging.exists()


def test_a_start_removes_chunks_no_record_names(make_docqa, start_server, tmp_path):
    """What a writer leaves when it dies just after a racing delete took its record."""
    dq = make_docqa()
    doc = tmp_path / "gone.txt"
    doc.write_text("The archive room is in the basement.")
    indexer = dq.indexer()
    prepared = indexer.prepare(doc, source="gone.txt")
    indexer.index.upsert(prepared.chunks, prepared.embeddings)  # and then the process died
    assert indexer.index.vectors.count() == len(prepared.chunks) > 0

    start_server(docqa=dq)

    index = dq.indexes.current()
    assert index.vectors.count() == 0 and index.lexical.ids() == []


def test_a_long_multibyte_file_name_is_shortened_not_a_500(live):
    """202 two-byte letters are 404 bytes, over what a file system takes for one name."""
    long_name = "é" * 202 + ".txt"
    response = live.client.post(
        "/v1/documents",
        files=[
            ("files", (long_name, b"The long-named memo says the bus leaves at nine.")),
            ("files", ("short.txt", b"The short memo says lunch is at noon.")),
        ],
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    kept = accepted["documents"][0]["source"]
    assert kept.endswith(".txt") and kept.startswith("é") and len(kept.encode()) <= 240
    job = live.wait_for_job(accepted["job_id"])
    assert [d["outcome"] for d in job["documents"]] == ["added", "added"]
