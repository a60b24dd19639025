"""The HTTP API: `create_app()` for uvicorn (`docqa serve`) and for tests."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import Counter, Histogram

from api.deps import require_api_key
from api.errors import install_error_handlers
from api.routes import documents, health, query
from api.routes import evals as eval_routes
from api.routes import openai as openai_compat
from app import Docqa
from docqa import __version__
from docqa.locking import writer_lock
from docqa.settings import Settings, load_settings
from ingestion.jobs import JobRunner
from ingestion.local_jobs import InProcessJobRunner

log = logging.getLogger("docqa.api")

REQUESTS = Counter("docqa_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("docqa_http_request_seconds", "HTTP request latency", ["method", "route"])


def build_job_runner(docqa: Docqa) -> JobRunner:
    """In-process ingestion by default; the docqa_ingest DAG when DOCQA_AIRFLOW__URL is set."""
    if docqa.settings.airflow.url:
        from docqa.errors import ConfigurationError
        from ingestion.airflow_jobs import AirflowJobRunner

        if not docqa.settings.chroma_url:
            # Airflow's task processes and this API would both write the on-disk Chroma
            # folder, which takes one writer process (docqa/locking.py).
            raise ConfigurationError(
                "DOCQA_AIRFLOW__URL needs a Chroma server shared with Airflow's workers: set "
                "DOCQA_CHROMA_URL (docker-compose.yml and `make airflow` run one)"
            )
        return AirflowJobRunner(jobs=docqa.jobs, settings=docqa.settings.airflow)
    return InProcessJobRunner(jobs=docqa.jobs, records=docqa.records, indexer=docqa.indexer)


def create_app(settings: Settings | None = None, docqa: Docqa | None = None) -> FastAPI:
    settings = settings or (docqa.settings if docqa else load_settings())
    docqa = docqa or Docqa(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            stack.enter_context(writer_lock(settings, holder="docqa serve"))
            # Load the model and open the index before the first request, and finish
            # whatever a crashed process left half-written.
            report = docqa.indexer().repair()
            if report.changed:
                log.warning("repaired the index after an interruption: %s", report)
            jobs = build_job_runner(docqa)
            app.state.jobs = jobs
            if isinstance(jobs, InProcessJobRunner):
                resumed = jobs.resume_unfinished()
                if resumed:
                    log.warning("resumed %d interrupted ingestion jobs", resumed)
            try:
                yield
            finally:
                jobs.shutdown()

    app = FastAPI(
        title="docqa",
        version=__version__,
        description="Question answering over your own documents, with citations you can check.",
        lifespan=lifespan,
    )
    app.state.docqa = docqa
    install_error_handlers(app)
    secured = [Depends(require_api_key)]
    app.include_router(documents.router, prefix="/v1", dependencies=secured)
    app.include_router(query.router, prefix="/v1", dependencies=secured)
    app.include_router(eval_routes.router, prefix="/v1", dependencies=secured)
    app.include_router(openai_compat.router, prefix="/v1", dependencies=secured)
    app.include_router(health.router)

    @app.middleware("http")
    async def _metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response

    return app
