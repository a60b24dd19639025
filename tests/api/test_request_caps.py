"""Caps on what a client sends, enforced before or while the body streams, and limits on
lists, offsets and filters: each one a defect found by probing, reproduced first."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest


def _raw(url: str, head: bytes, body_chunks: list[bytes] = (), pause: float = 0.0) -> bytes:
    """Send a raw HTTP/1.1 request (headers, then body chunks) and read what comes back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the body ended: what we test
        sock.settimeout(30)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < 20:
                got = sock.recv(65536)
                if not got:
                    break
                data += got
        except (ConnectionResetError, TimeoutError):
            pass
        return data


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _leftovers(data_dir: Path) -> list[Path]:
    uploads = data_dir / "uploads"
    return [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []


def test_a_content_length_over_the_cap_is_refused_before_the_body(start_server):
    live = start_server(api={"max_upload_mb": 1, "max_files_per_upload": 2})
    head = (
        b"POST /v1/documents HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 209715200\r\n\r\n"
    )
    t0 = time.monotonic()
    response = _raw(live.url, head)  # not one byte of the 200 MB is sent
    assert _status(response) == 413 and b"payload_too_large" in response
    assert time.monotonic() - t0 < 20  # answered without waiting for a body
    assert _leftovers(live.docqa.settings.data_dir) == []


def test_a_file_over_the_limit_is_cut_while_it_streams(start_server):
    live = start_server(api={"max_upload_mb": 1})
    preamble = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
    )
    head = (
        b"POST /v1/documents HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )

    def chunked(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    block = b"x" * (256 << 10)
    # 40 MiB offered in 256 KiB chunks; the server must answer after about 1 MiB.
    chunks = [chunked(preamble)] + [chunked(block) for _ in range(160)]
    response = _raw(live.url, head, chunks)
    assert _status(response) == 413
    assert b"over the 1 MiB upload limit" in response
    assert _leftovers(live.docqa.settings.data_dir) == []
    assert live.client.get("/v1/documents").json()["total"] == 0


def test_parts_are_counted_before_they_are_kept(start_server):
    live = start_server(api={"max_files_per_upload": 2})
    files = [("files", (f"f{i}.txt", b"some text")) for i in range(3)]
    response = live.client.post("/v1/documents", files=files)
    assert response.status_code == 400
    assert "more than 2 files" in response.json()["error"]["message"]
    assert _leftovers(live.docqa.settings.data_dir) == []


def test_a_json_body_over_the_cap_is_refused_whole_or_chunked(start_server):
    live = start_server(api={"max_json_kb": 16})
    big = {"query": "x" * 10, "filters": {"source": ["y" * 1000] * 40}}
    declared = live.client.post("/v1/search", json=big)
    assert declared.status_code == 413
    assert "DOCQA_API__MAX_JSON_KB" in declared.json()["error"]["message"]

    def stream():
        yield b'{"query": "canteen", "filters": {"source": ['
        for _ in range(100):
            yield b'"' + b"z" * 1000 + b'",'
        yield b'"end"]}}'

    chunked = live.client.post(
        "/v1/search", content=stream(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    assert live.client.post("/v1/search", json={"query": "canteen"}).status_code == 200


def test_filter_lists_and_offsets_are_bounded(live):
    many = {"query": "x", "filters": {"document_id": [f"doc_{i}" for i in range(1001)]}}
    too_many = live.client.post("/v1/search", json=many)
    assert too_many.status_code == 422 and "filters.document_id" in too_many.text
    bounded = {"query": "x", "filters": {"document_id": [f"doc_{i}" for i in range(1000)]}}
    assert live.client.post("/v1/search", json=bounded).status_code == 200
    huge = live.client.get("/v1/documents", params={"offset": 9223372036854775808})
    assert huge.status_code == 422
    assert live.client.get("/v1/documents", params={"offset": 10**9}).status_code == 200


def test_an_empty_filter_list_matches_nothing(live):
    accepted = live.client.post(
        "/v1/documents", files=[("files", ("canteen.txt", b"The canteen opens at noon."))]
    )
    live.wait_for_job(accepted.json()["job_id"])
    everything = live.client.post("/v1/search", json={"query": "canteen"}).json()
    assert everything["results"]
    for empty in ({"document_id": []}, {"source": []}, {"type": []}):
        found = live.client.post("/v1/search", json={"query": "canteen", "filters": empty})
        assert found.status_code == 200 and found.json()["results"] == []
        asked = live.client.post(
            "/v1/ask", json={"question": "When does the canteen open?", "filters": empty}
        ).json()
        assert asked["found"] is False and asked["citations"] == []


@pytest.mark.parametrize("value", [0, 1, "true", "yes", None])
def test_stream_must_be_a_real_boolean(live, value):
    response = live.client.post("/v1/ask", json={"question": "anything", "stream": value})
    assert response.status_code == 422, response.text
