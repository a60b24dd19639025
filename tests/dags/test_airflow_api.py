"""Uploads handed to Airflow: the job runner triggers docqa_ingest through a real
`airflow api-server` (REST API v2, a token from POST /auth/token) and reads the job's
status from the DAG run."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docqa.errors import ConfigurationError
from ingestion.airflow_jobs import AirflowClient, AirflowJobRunner
from ingestion.jobs import UploadItem
from tests.dags.conftest import AIRFLOW_ENV, _airflow_command
from tests.fakes.loopback import free_port

USER, PASSWORD = "docqa", secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def airflow_url(airflow_db: Path) -> Iterator[str]:
    """A real api-server on loopback, with the DAGs serialized into its metadata DB."""
    passwords = airflow_db / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env = {
        **os.environ,
        **AIRFLOW_ENV,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
    }
    done = subprocess.run(
        [*_airflow_command(), "dags", "reserialize"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    port = free_port()
    log = (airflow_db / "api-server.log").open("w")
    server = subprocess.Popen(
        [*_airflow_command(), "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (airflow_db / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "airflow api-server did not start in 90 s"
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def airflow_dq(make_docqa, airflow_url):
    return make_docqa(
        airflow={"url": airflow_url, "username": USER, "password": PASSWORD, "timeout_s": 10}
    )


def queue_upload(dq, tmp_path: Path, job_id: str) -> UploadItem:
    """What POST /v1/documents does before handing the job to the runner."""
    path = tmp_path / "uploads" / "memo.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("The canteen opens at half past eleven on weekdays.\n")
    item = UploadItem("doc_memo", "memo.txt", path)
    dq.records.mark_queued(
        item.document_id, source=item.source, file_type="txt", stored_path=str(path)
    )
    dq.jobs.create(job_id, [item.document_id], backend="airflow")
    return item


def test_an_upload_triggers_docqa_ingest_and_its_status_follows_the_run(airflow_dq, tmp_path):
    job_id = "job_" + secrets.token_hex(6)
    item = queue_upload(airflow_dq, tmp_path, job_id)
    runner = AirflowJobRunner(jobs=airflow_dq.jobs, settings=airflow_dq.settings.airflow)
    try:
        runner.submit(job_id, [item])
        assert runner.wait_idle(30)
        job = airflow_dq.jobs.get(job_id)
        assert job.error is None and job.external_id == job_id
        assert job.status == "queued"  # no scheduler here: the run waits in Airflow's queue

        client = runner.client
        run = client.dag_run("docqa_ingest", job_id)
        assert run["conf"] == {"document_ids": ["doc_memo"], "job_id": job_id}
        assert run["state"] == "queued" and run["run_type"] == "manual"

        runner.submit(job_id, [item])  # a retried request starts no second run
        assert runner.wait_idle(30)
        runs = client.request("GET", "/dags/docqa_ingest/dagRuns").json()
        assert [r["dag_run_id"] for r in runs["dag_runs"]].count(job_id) == 1

        # An operator fails the run in Airflow: the job says so, pointing at the task logs.
        patched = client.request(
            "PATCH", f"/dags/docqa_ingest/dagRuns/{job_id}", json={"state": "failed"}
        )
        assert patched.status_code == 200, patched.text
        job = runner.refresh(airflow_dq.jobs.get(job_id))
        assert job.status == "failed" and f"Airflow run {job_id}" in job.error
    finally:
        runner.shutdown()


def test_a_run_that_succeeded_elsewhere_is_not_reported_as_done(airflow_dq, tmp_path):
    """The DAG's last task writes the results; a success without them means Airflow's
    workers use another record store, and the job says so."""
    job_id = "job_" + secrets.token_hex(6)
    item = queue_upload(airflow_dq, tmp_path, job_id)
    runner = AirflowJobRunner(jobs=airflow_dq.jobs, settings=airflow_dq.settings.airflow)
    try:
        runner.submit(job_id, [item])
        assert runner.wait_idle(30)
        runner.client.request(
            "PATCH", f"/dags/docqa_ingest/dagRuns/{job_id}", json={"state": "success"}
        )
        job = runner.refresh(airflow_dq.jobs.get(job_id))
        assert job.status == "failed" and "DOCQA_DATABASE_URL" in job.error
    finally:
        runner.shutdown()


def test_a_stale_token_is_renewed_and_a_wrong_password_is_named(airflow_dq, airflow_url):
    settings = airflow_dq.settings.airflow.model_copy(update={"token": "not-a-jwt"})
    client = AirflowClient(settings)
    assert client.request("GET", "/dags/docqa_ingest").json()["dag_id"] == "docqa_ingest"
    client.close()

    wrong = AirflowClient(settings.model_copy(update={"token": None, "password": "wrong"}))
    with pytest.raises(ConfigurationError, match="refused the login of 'docqa'"):
        wrong.request("GET", "/dags/docqa_ingest")
    wrong.close()

    bare = AirflowClient(settings.model_copy(update={"username": None, "password": None}))
    with pytest.raises(ConfigurationError, match="DOCQA_AIRFLOW__TOKEN"):
        bare.request("GET", "/dags/docqa_ingest")
    bare.close()


def test_an_unreachable_airflow_fails_the_job_with_the_reason(make_docqa, tmp_path):
    dq = make_docqa(airflow={"url": f"http://127.0.0.1:{free_port()}", "token": "x"})
    job_id = "job_" + secrets.token_hex(6)
    item = queue_upload(dq, tmp_path, job_id)
    runner = AirflowJobRunner(jobs=dq.jobs, settings=dq.settings.airflow)
    runner.attempts = 2  # one back-off of 1 s
    try:
        runner.submit(job_id, [item])
        assert runner.wait_idle(30)
    finally:
        runner.shutdown()
    job = dq.jobs.get(job_id)
    assert job.status == "failed"
    assert "could not start ingestion in Airflow" in job.error and "not reachable" in job.error
