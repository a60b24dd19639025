"""Liveness, readiness and metrics, for orchestrators and monitoring.

`/livez`: the process answers. `/readyz`: every required dependency answers (503 when one
does not). Without a key both say up or down and nothing more (no versions, counts,
internal addresses or error texts); with any valid key they say what was checked.
`/healthz` stays for existing healthchecks: readiness in the older shape.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import DocqaDep, get_principal
from api.errors import responses
from api.readiness import check_all, ready
from api.schemas import ComponentCheck, Health, Liveness, Readiness
from docqa import __version__
from docqa.errors import DocqaError

router = APIRouter(tags=["operations"])


def _caller(request: Request) -> Principal | None:
    """The caller when a valid key came (or authentication is off), else None: a health
    probe never answers 401, it only says less."""
    try:
        return get_principal(request)
    except DocqaError:
        return None


@router.get("/livez", response_model=Liveness, summary="The process answers")
def livez() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "a required dependency is down"}},
    summary="Every required dependency answers",
)
async def readyz(request: Request, docqa: DocqaDep, response: Response) -> Readiness:
    checks = await run_in_threadpool(check_all, docqa)
    ok = ready(checks)
    if not ok:
        response.status_code = 503
    body = Readiness(status="ready" if ok else "not_ready")
    if await run_in_threadpool(_caller, request) is not None:
        body.version = __version__
        body.components = {
            c.name: ComponentCheck(
                status="up" if c.up else "down",
                required=c.required,
                latency_ms=c.latency_ms,
                error=c.error,
            )
            for c in checks
        }
    return body


@router.get(
    "/healthz",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: {"model": Health, "description": "a required dependency is down"}},
    summary="Readiness in the older shape (prefer /readyz)",
)
async def healthz(request: Request, docqa: DocqaDep, response: Response) -> Health:
    checks = await run_in_threadpool(check_all, docqa)
    ok = ready(checks)
    if not ok:
        response.status_code = 503
    body = Health(status="ok" if ok else "degraded")
    if await run_in_threadpool(_caller, request) is None:
        return body

    def details() -> None:
        body.version = __version__
        body.components = {c.name: "ok" if c.up else f"error: {c.error}" for c in checks}
        body.embedding_model = docqa.embedder.model_id
        body.generator = docqa.settings.answer.generator
        try:
            body.documents = docqa.records.count()
            index = docqa.indexes.current()
            body.collection, body.chunks = index.collection, index.vectors.count()
        except Exception:  # noqa: BLE001 - the components already say what is down
            pass

    await run_in_threadpool(details)
    return body


@router.get("/metrics", include_in_schema=False, responses=responses(401, 403))
def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if request.app.state.docqa.settings.api.metrics_require_key:
        from api.auth import Scope, authorize

        authorize(get_principal(request), Scope.ADMIN)
    body = generate_latest() + generate_latest(request.app.state.http_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
