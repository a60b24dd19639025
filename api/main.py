"""The HTTP API: `create_app()` for uvicorn (`docqa serve`) and for tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager

from fastapi import Depends, FastAPI

from api.auth import KeyStore, Scope
from api.deps import require
from api.errors import install_error_handlers, responses
from api.observability import install_observability
from api.rate_limits import RateLimiter
from api.routes import documents, feedback, health, me, passages, query
from api.routes import evals as eval_routes
from api.routes import openai as openai_compat
from api.web import install_web
from app import Docqa
from docqa import __version__
from docqa.locking import writer_lock
from docqa.logs import configure_logging
from docqa.settings import Settings, load_settings
from ingestion.jobs import JobRunner
from ingestion.local_jobs import InProcessJobRunner
from ingestion.uploads import UploadsJanitor, sweep_uploads

log = logging.getLogger("docqa.api")

# An upload's staging folder older than this is a leftover (one request's stream).
STAGING_STALE_S = 3600


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
    return InProcessJobRunner(
        jobs=docqa.jobs,
        records=lambda name: docqa.for_collection(name).records,
        indexer=lambda name: docqa.for_collection(name).indexer(),
        max_attempts=docqa.settings.ingestion.max_job_attempts,
        after_job=UploadsJanitor(
            docqa.records,
            docqa.settings.uploads_dir,
            retention_h=docqa.settings.ingestion.failed_upload_retention_h,
        ).maybe_sweep,
    )


def _housekeeper(settings: Settings, stack: ExitStack) -> bool:
    """Whether this process repairs, sweeps and resumes at start. With several workers of one
    `docqa serve`, the first to take the data folder's housekeeping lock does, for its life;
    the others would repeat its work and resume the jobs it resumed."""
    if settings.api.workers == 1:
        return True
    from filelock import FileLock, Timeout

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.data_dir / ".housekeeping.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    stack.callback(lock.release)
    return True


def _start_up_housekeeping(docqa: Docqa, jobs: JobRunner) -> None:
    """Load the model and open the index before the first request, and finish whatever a
    crashed process left half-written, in every collection. Orphans are looked for too: a
    writer that dies after a racing delete took its record leaves chunks no journal names."""
    settings = docqa.settings
    for name in docqa.records.collections():
        report = docqa.for_collection(name).indexer().repair(scan_orphans=True)
        if report.changed:
            log.warning("repaired collection %s after an interruption: %s", name, report)
    swept = sweep_uploads(
        docqa.records,
        settings.uploads_dir,
        retention_h=settings.ingestion.failed_upload_retention_h,
        # Staging folders are in use only while a request streams in: holding the data
        # folder (embedded mode), any left is a crash's; with a Chroma server other API
        # replicas may share the folder, so only old ones go.
        staging_older_than_s=STAGING_STALE_S if settings.chroma_url else 0,
    )
    if swept.staging_removed:
        log.warning("removed %d staging folders of interrupted uploads", swept.staging_removed)
    if isinstance(jobs, InProcessJobRunner):
        resumed = jobs.resume_unfinished()
        if resumed:
            log.warning("resumed %d interrupted ingestion jobs", resumed)
        jobs.watch()


def create_app(settings: Settings | None = None, docqa: Docqa | None = None) -> FastAPI:
    settings = settings or (docqa.settings if docqa else load_settings())
    docqa = docqa or Docqa(settings)
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            stack.enter_context(writer_lock(settings, holder="docqa serve"))
            jobs = build_job_runner(docqa)
            app.state.jobs = jobs
            if _housekeeper(settings, stack):
                _start_up_housekeeping(docqa, jobs)
            try:
                yield
            finally:
                jobs.shutdown()

    app = FastAPI(
        title="docqa",
        version=__version__,
        description="Question answering over your own documents, with citations you can check.",
        lifespan=lifespan,
        # FastAPI's own docs pages load their assets from a CDN: install_web serves them.
        docs_url=None,
        redoc_url=None,
    )
    app.state.docqa = docqa
    app.state.keys = KeyStore(settings.resolved_database_url)
    app.state.rate_limiter = RateLimiter(settings.api.rate_limits, settings.redis_url)
    install_error_handlers(app)
    for router, scope in (
        (query.router, Scope.ASK),
        (passages.router, Scope.ASK),
        (feedback.router, Scope.ASK),
        (me.router, Scope.ASK),
        (openai_compat.router, Scope.ASK),
        (documents.router, Scope.WRITE),
        (eval_routes.router, Scope.ADMIN),
    ):
        app.include_router(
            router,
            prefix="/v1",
            dependencies=[Depends(require(scope))],
            responses=responses(401, 403, 429),
        )
    app.include_router(health.router)
    install_web(app)
    api = settings.api
    install_observability(
        app,
        json_bytes=api.max_json_kb * 1024,
        # Every file at its limit, plus the multipart framing of each part.
        upload_bytes=int(api.max_files_per_upload * (api.max_upload_mb * 2**20 + 2**16)),
        queue_depth=lambda: len(docqa.jobs.unfinished()),
    )

    return app
