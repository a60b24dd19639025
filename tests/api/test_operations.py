"""What operators see: liveness and readiness (with what each needs), Prometheus metrics,
request ids in logs and error bodies, and OpenTelemetry spans, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from api.auth import KeyStore, Scope
from api.main import create_app
from app import Docqa
from tests.fakes.fake_vllm import Behaviour, FakeVLLM
from tests.fakes.loopback import free_port, serve

NOTE = "The canteen opens at half past eleven on weekdays and closes at two.\n"


def _upload(client: httpx.Client, name: str = "canteen.txt", text: str = NOTE) -> None:
    accepted = client.post("/v1/documents", files=[("files", (name, text.encode()))])
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{job_id}").json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_livez_and_readyz_say_little_without_a_key_and_everything_with_one(
    make_docqa,
) -> None:
    dq = make_docqa(api={"api_key": "admin-secret"})
    served = serve(create_app(docqa=dq))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            assert client.get("/livez").json() == {"status": "alive"}
            assert client.get("/readyz").json() == {"status": "ready"}
            assert client.get("/healthz").json() == {"status": "ok"}
            auth = {"Authorization": "Bearer admin-secret"}
            body = client.get("/readyz", headers=auth).json()
            assert body["status"] == "ready" and body["version"]
            assert set(body["components"]) == {"record_store", "vector_store"}
            store = body["components"]["record_store"]
            assert store["status"] == "up" and store["required"] and store["latency_ms"] >= 0
            health = client.get("/healthz", headers=auth).json()
            assert health["components"] == {"record_store": "ok", "vector_store": "ok"}
            assert health["embedding_model"] and health["documents"] == 0
    finally:
        served.stop()


def test_readyz_is_503_when_a_configured_vllm_is_down(make_docqa) -> None:
    fake = FakeVLLM(Behaviour(answer="Noon [1].")).start()
    dq = make_docqa(answer={"generator": "vllm"}, vllm={"urls": [fake.url]})
    served = serve(create_app(docqa=dq))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            fake.stop()
            down = client.get("/readyz")
            assert down.status_code == 503 and down.json()["status"] == "not_ready"
            # Auth is off here (loopback, no key): details are served, the model is down.
            assert down.json()["components"]["vllm"]["status"] == "down"
            assert client.get("/livez").status_code == 200  # alive all the same
    finally:
        served.stop()
        fake.stop()


@pytest.mark.services
def test_readyz_is_503_when_the_record_store_is_down(make_docqa, pg_database) -> None:
    from sqlalchemy import text

    name, admin = pg_database.name, pg_database.admin
    dq = make_docqa(database_url=pg_database.url)
    served = serve(create_app(docqa=dq))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            with admin.connect() as conn:  # the database goes away under the server
                conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = '{name}'"
                    )
                )
            down = client.get("/readyz")
            assert down.status_code == 503 and down.json()["status"] == "not_ready"
            assert down.json()["components"]["record_store"]["status"] == "down"
    finally:
        served.stop()


def _metric_names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_metrics_after_one_ask(make_docqa) -> None:
    fake = FakeVLLM(Behaviour(answer="It opens at half past eleven [1].")).start()
    dq = make_docqa(answer={"generator": "vllm"}, vllm={"urls": [fake.url]})
    served = serve(create_app(docqa=dq))
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            _upload(client)
            question = {"question": "When does the canteen open?", "stream": True}
            with client.stream("POST", "/v1/ask", json=question) as streamed:
                assert streamed.status_code == 200
                streamed.read()
            text = client.get("/metrics").text
    finally:
        served.stop()
        fake.stop()
    names = _metric_names(text)
    for expected in (
        "docqa_http_requests_total",
        "docqa_http_request_duration_seconds_bucket",
        "docqa_retrieval_seconds_bucket",
        "docqa_generation_seconds_bucket",
        "docqa_time_to_first_token_seconds_bucket",
        "docqa_prompt_tokens_total",
        "docqa_completion_tokens_total",
        "docqa_answers_total",
        "docqa_upstream_failures_total",
        "docqa_ingested_documents_total",
        "docqa_ingested_chunks_total",
        "docqa_ingest_failures_total",
        "docqa_ingest_queue_depth",
        "docqa_build_info",
    ):
        assert expected in names or f"# TYPE {expected.removesuffix('_bucket')}" in text, expected
    assert 'le="120.0"' in text  # buckets reach two minutes
    assert 'docqa_answers_total{outcome="answered"}' in text
    assert 'handler="/v1/ask"' in text
    assert _value(text, 'docqa_ingested_documents_total{outcome="added"}') >= 1
    assert _value(text, "docqa_ingested_chunks_total") >= 1


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {series} in /metrics")


def test_metrics_count_failed_model_calls_and_failed_documents(make_docqa) -> None:
    fake = FakeVLLM(Behaviour(mode="503")).start()
    dq = make_docqa(answer={"generator": "vllm"}, vllm={"urls": [fake.url]})
    served = serve(create_app(docqa=dq))
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            _upload(client)
            broken = client.post(
                "/v1/documents", files=[("files", ("broken.pdf", b"%PDF-1.4 not really"))]
            ).json()
            for _ in range(600):
                job = client.get(f"/v1/jobs/{broken['job_id']}").json()
                if job["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.1)
            answer = client.post("/v1/ask", json={"question": "When does the canteen open?"})
            assert answer.json()["degraded"] is True
            text = client.get("/metrics").text
    finally:
        served.stop()
        fake.stop()
    failures = [
        line for line in text.splitlines() if line.startswith("docqa_upstream_failures_total{")
    ]
    assert any(fake.url.rstrip("/") in line and 'reason="error"' in line for line in failures)
    assert _value(text, 'docqa_answers_total{outcome="degraded"}') >= 1
    assert _value(text, 'docqa_ingested_documents_total{outcome="failed"}') >= 1
    assert any(line.startswith("docqa_ingest_failures_total{reason=") for line in text.splitlines())


def test_a_500_is_counted_and_answered_in_the_error_shape_with_the_request_id(make_docqa):
    class Broken:
        def retrieve(self, *args, **kwargs):
            raise RuntimeError("the index exploded at /srv/secret/path")

        def index_version(self) -> str:
            return "x"

    dq = make_docqa()
    app = create_app(docqa=Docqa(dq.settings, embedder=dq.embedder, retriever=Broken()))
    served = serve(app)
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            failed = client.post(
                "/v1/search", json={"query": "anything"}, headers={"X-Request-ID": "probe-500"}
            )
            assert failed.status_code == 500
            error = failed.json()["error"]
            assert error["request_id"] == "probe-500" == failed.headers["x-request-id"]
            assert "secret" not in failed.text and "RuntimeError" not in failed.text
            metrics = client.get("/metrics").text
    finally:
        served.stop()
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("docqa_http_requests_total")
        and 'handler="/v1/search"' in line
        and 'status="500"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1


def test_every_response_carries_a_request_id(live) -> None:
    mine = live.client.get("/v1/documents/doc_none", headers={"X-Request-ID": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"
    assert mine.json()["error"]["request_id"] == "abc-123"
    made = live.client.get("/livez")
    assert len(made.headers["x-request-id"]) == 32
    odd = live.client.get("/livez", headers={"X-Request-ID": "a b;" * 60})
    assert len(odd.headers["x-request-id"]) == 32  # replaced, never echoed into logs


def _serve_cli(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    full = {
        **os.environ,
        "DOCQA_DATA_DIR": str(tmp_path / "data"),
        "DOCQA_API__PORT": str(port),
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve"],
        env=full,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.stderr.read() if proc.stderr else "serve did not start")
        time.sleep(0.2)


def test_a_json_log_line_carries_the_request_id(tmp_path) -> None:
    proc, url = _serve_cli(tmp_path, {"DOCQA_LOG_FORMAT": "json", "DOCQA_LOG_LEVEL": "info"})
    try:
        response = httpx.get(f"{url}/v1/documents", headers={"X-Request-ID": "trace-me-42"})
        assert response.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines, err[-2000:]
    assert all({"time", "level", "logger", "message", "request_id"} <= set(x) for x in lines)
    mine = [x for x in lines if x["request_id"] == "trace-me-42"]
    assert mine and any("/v1/documents" in x["message"] for x in mine), lines[-5:]


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps the span names of every export."""

    spans: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                _Collector.spans.extend(s.name for s in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_per_stage_reach_an_otlp_endpoint(tmp_path) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    proc, url = _serve_cli(
        tmp_path,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            _upload(client)
            assert (
                client.post("/v1/ask", json={"question": "When does it open?"}).status_code == 200
            )
        deadline = time.monotonic() + 30
        while not {"docqa.retrieve", "docqa.generate"} <= set(_Collector.spans):
            assert time.monotonic() < deadline, _Collector.spans
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
        collector.shutdown()
    assert any(name.startswith("HTTP POST /v1/ask") for name in _Collector.spans)


def test_metrics_can_require_an_admin_key(make_docqa) -> None:
    dq = make_docqa(api={"api_key": "admin-secret", "metrics_require_key": True})
    _, ask_key = KeyStore(dq.settings.resolved_database_url).create("reader", Scope.ASK)
    served = serve(create_app(docqa=dq))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            assert client.get("/metrics").status_code == 401
            reader = client.get("/metrics", headers={"Authorization": f"Bearer {ask_key}"})
            assert reader.status_code == 403
            admin = client.get("/metrics", headers={"Authorization": "Bearer admin-secret"})
            assert admin.status_code == 200 and "docqa_build_info" in admin.text
    finally:
        served.stop()
