"""The eval routes over the real app: runs listed, reports served, docqa's error shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from app import Docqa
from docqa.settings import Settings


@pytest.fixture
def client(stored_run: Any, eval_settings: Settings, embedder: Any) -> Iterator[TestClient]:
    dq = Docqa(eval_settings, embedder=embedder)
    with TestClient(create_app(docqa=dq)) as c:
        yield c


def test_runs_are_listed_newest_first(client: TestClient, stored_run: Any) -> None:
    response = client.get("/v1/eval/runs")
    assert response.status_code == 200
    runs = response.json()["runs"]
    mine = next(r for r in runs if r["run_id"] == stored_run.run.run_id)
    assert mine["benchmark"] == "fixture" and mine["questions"] == 16
    assert 0 <= mine["metrics"]["hit@5"] <= 1
    assert mine["report_url"] == f"/v1/eval/runs/{stored_run.run.run_id}/report"
    created = [r["created_at"] for r in runs]
    assert created == sorted(created, reverse=True)
    assert client.get("/v1/eval/runs", params={"benchmark": "other"}).json() == {"runs": []}


def test_report_is_served_as_html(client: TestClient, stored_run: Any) -> None:
    response = client.get(f"/v1/eval/runs/{stored_run.run.run_id}/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "docqa evaluation: fixture" in response.text
    assert "data:image/png;base64," in response.text


def test_report_is_rendered_when_its_folder_is_gone(
    client: TestClient, stored_run: Any, eval_settings: Settings, tmp_path: Path
) -> None:
    from evals.store import open_store

    store = open_store(eval_settings)
    store.update_run(stored_run.run.run_id, report_dir=str(tmp_path / "moved"))
    try:
        response = client.get(f"/v1/eval/runs/{stored_run.run.run_id}/report")
        assert response.status_code == 200 and "docqa evaluation" in response.text
    finally:
        store.update_run(stored_run.run.run_id, report_dir=str(stored_run.report.folder))


def test_unknown_run_is_a_404_in_the_docqa_error_shape(client: TestClient) -> None:
    for path in ("/v1/eval/runs/nope", "/v1/eval/runs/nope/report"):
        response = client.get(path)
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["type"] == "not_found" and error["code"] == 404
        assert "no eval run 'nope'" in error["message"]


def test_eval_routes_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/eval/runs"]
    report = paths["/v1/eval/runs/{run_id}/report"]["get"]
    assert "text/html" in report["responses"]["200"]["content"]
    assert report["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorResponse"
    )
