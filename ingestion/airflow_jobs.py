"""Upload jobs run by Airflow: each upload triggers the docqa_ingest DAG through Airflow's
REST API (/api/v2), and a job's status is read from its DAG run.

The DAG run id is the job id, so triggering twice (a retried request) starts one run.
The DAG's last task writes the per-document results to the job in the record store that
the API and Airflow's workers share; `refresh` maps the run's state for everything else
(queued, running, or failed before the results were written).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import httpx

from docqa.domain import DEFAULT_COLLECTION, JobStatus
from docqa.errors import ConfigurationError, DocqaError, ServiceUnavailable
from ingestion.jobs import JobRecord, JobStore, UploadItem

if TYPE_CHECKING:
    from docqa.settings import AirflowSettings

log = logging.getLogger(__name__)

# Airflow DAG run states -> docqa job status.
RUN_STATES = {
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "success": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
}


class AirflowClient:
    """The few calls of Airflow 3's REST API that docqa makes, with its token handling:
    a configured token, or one obtained from POST /auth/token with user and password and
    renewed when it expires."""

    def __init__(self, settings: AirflowSettings, *, transport: httpx.BaseTransport | None = None):
        if not settings.url:
            raise ConfigurationError("DOCQA_AIRFLOW__URL is not set")
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self._http = httpx.Client(timeout=settings.timeout_s, transport=transport)
        self._token = settings.token
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _login(self) -> str:
        s = self.settings
        if not (s.username and s.password):
            raise ConfigurationError(
                "Airflow answered 401: set DOCQA_AIRFLOW__TOKEN, or DOCQA_AIRFLOW__USERNAME and "
                "DOCQA_AIRFLOW__PASSWORD"
            )
        response = self._send(
            "POST",
            f"{self.base}/auth/token",
            json={"username": s.username, "password": s.password},
        )
        if response.status_code not in (200, 201):
            raise ConfigurationError(
                f"Airflow refused the login of {s.username!r} ({response.status_code}): "
                f"{_detail(response)}"
            )
        return str(response.json()["access_token"])

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"Airflow at {self.base} is not reachable: {exc}") from exc

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to /api/v2 with a valid token (logging in again once on 401)."""
        url = f"{self.base}/api/v2{path}"
        for attempt in range(2):
            with self._lock:
                if self._token is None and self.settings.username:
                    self._token = self._login()
                token = self._token
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = self._send(method, url, headers=headers, **kwargs)
            if _token_rejected(response) and attempt == 0 and self.settings.username:
                with self._lock:
                    self._token = None  # expired, or signed by a restarted server: log in again
                continue
            if _token_rejected(response):
                raise ConfigurationError(
                    f"Airflow rejected docqa's token ({response.status_code}: "
                    f"{_detail(response)}): set DOCQA_AIRFLOW__TOKEN to a valid token, or "
                    "DOCQA_AIRFLOW__USERNAME and DOCQA_AIRFLOW__PASSWORD"
                )
            if response.status_code >= 500:
                raise ServiceUnavailable(
                    f"Airflow answered {response.status_code} to {method} {path}: "
                    f"{_detail(response)}"
                )
            return response
        return response

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """Start a run of `dag_id`; a run with this id that exists already is returned."""
        response = self.request(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        if response.status_code == 409:
            return self.dag_run(dag_id, run_id)
        if response.status_code not in (200, 201):
            raise DocqaError(
                f"Airflow did not start {dag_id} ({response.status_code}): {_detail(response)}"
            )
        return response.json()  # type: ignore[no-any-return]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        if response.status_code != 200:
            raise DocqaError(
                f"Airflow has no run {run_id} of {dag_id} ({response.status_code}): "
                f"{_detail(response)}"
            )
        return response.json()  # type: ignore[no-any-return]


def _token_rejected(response: httpx.Response) -> bool:
    """Airflow answers 401 to a missing or expired token and 403 "Invalid JWT token" to one
    it cannot verify (signed before the api-server restarted with a new secret)."""
    if response.status_code == 401:
        return True
    return response.status_code == 403 and "Invalid JWT" in _detail(response)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:300]


class AirflowJobRunner:
    """A `JobRunner` that hands uploads to the docqa_ingest DAG.

    `submit` returns at once: a worker thread makes the REST call (retried with backoff),
    so a slow Airflow never holds up the upload request. A job whose trigger never reached
    Airflow (the API stopped first) is triggered when its status is next read.
    """

    backend = "airflow"
    attempts = 3

    def __init__(
        self, *, jobs: JobStore, settings: AirflowSettings, client: AirflowClient | None = None
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.jobs = jobs
        self.settings = settings
        self.client = client or AirflowClient(settings)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docqa-airflow")
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()

    def submit(self, job_id: str, items: list[UploadItem]) -> None:
        with self._in_flight_lock:
            self._in_flight.add(job_id)
        collection = items[0].collection if items else DEFAULT_COLLECTION
        self._pool.submit(self._trigger, job_id, [i.document_id for i in items], collection)

    def _trigger(
        self, job_id: str, document_ids: list[str], collection: str = DEFAULT_COLLECTION
    ) -> None:
        """Start the job's run. When Airflow cannot take it, the job fails with the reason;
        the uploads stay stored (upload again, or trigger the DAG by hand)."""
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
        )

        conf: dict[str, Any] = {"document_ids": document_ids, "job_id": job_id}
        if collection != DEFAULT_COLLECTION:
            conf["collection"] = collection
        # Only an unreachable or failing Airflow is retried (it may be restarting), with
        # back-off; a refusal (a bad conf, a missing DAG) fails the job at once.
        retrying = Retrying(
            retry=retry_if_exception_type(ServiceUnavailable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=1, max=30),
            reraise=True,
        )
        try:
            try:
                run = retrying(self.client.trigger, self.settings.ingest_dag_id, job_id, conf)
            except DocqaError as exc:
                self._fail(job_id, exc)
                return
            self.jobs.update(
                job_id,
                external_id=str(run.get("dag_run_id", job_id)),
                status=RUN_STATES.get(str(run.get("state")), JobStatus.QUEUED),
            )
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(job_id)

    def _fail(self, job_id: str, exc: DocqaError) -> None:
        log.error("could not trigger %s for %s: %s", self.settings.ingest_dag_id, job_id, exc)
        self.jobs.update(
            job_id,
            status=JobStatus.FAILED,
            error=f"could not start ingestion in Airflow: {exc.message}",
        )

    def refresh(self, job: JobRecord) -> JobRecord:
        """The job with its status from the DAG run; as stored when Airflow does not answer."""
        if job.status.finished or job.backend != self.backend:
            return job
        if job.external_id is None:
            # Not triggered yet: still queued here, or lost when an API process stopped.
            with self._in_flight_lock:
                lost = job.job_id not in self._in_flight
            if lost:
                self._trigger(job.job_id, job.document_ids)
            return self.jobs.get(job.job_id) or job
        try:
            run = self.client.dag_run(self.settings.ingest_dag_id, job.external_id)
        except DocqaError as exc:
            log.warning("cannot read the state of job %s from Airflow: %s", job.job_id, exc)
            return job
        # The DAG's last task may have written the results since `job` was read.
        current = self.jobs.get(job.job_id) or job
        if current.status.finished:
            return current
        status = RUN_STATES.get(str(run.get("state")), current.status)
        fields: dict[str, Any] = {}
        if status != current.status:
            fields["status"] = status
        if status == JobStatus.FAILED:
            fields["error"] = (
                f"Airflow run {job.external_id} of {self.settings.ingest_dag_id} failed; "
                "its task logs say why"
            )
        elif status == JobStatus.SUCCEEDED:
            # The last task writes the results before the run can succeed: a run without
            # them wrote to another record store.
            fields["error"] = (
                "the Airflow run succeeded but left no results in this record store: do the "
                "API and the Airflow workers share DOCQA_DATABASE_URL?"
            )
            fields["status"] = JobStatus.FAILED
        if fields:
            self.jobs.update(job.job_id, **fields)
            current = self.jobs.get(job.job_id) or current
        return current

    def wait_idle(self, timeout: float | None = None) -> bool:
        """For tests and shutdown: wait until every queued trigger was sent."""
        from concurrent.futures import wait

        return not wait([self._pool.submit(lambda: None)], timeout=timeout).not_done

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()
