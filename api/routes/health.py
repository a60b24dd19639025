"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import DocqaDep
from api.schemas import Health
from docqa import __version__

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz(docqa: DocqaDep, response: Response) -> Health:
    components: dict[str, str] = {}
    documents = chunks = 0
    collection = ""
    try:
        documents = docqa.records.count()
        components["record_store"] = "ok"
    except Exception as exc:  # noqa: BLE001 - health reports failures, it does not raise them
        components["record_store"] = f"error: {exc}"
    try:
        index = docqa.indexes.current()
        collection = index.collection
        chunks = index.vectors.count()
        components["vector_store"] = "ok"
    except Exception as exc:  # noqa: BLE001
        components["vector_store"] = f"error: {exc}"
    healthy = all(v == "ok" for v in components.values())
    if not healthy:
        response.status_code = 503
    return Health(
        status="ok" if healthy else "degraded",
        version=__version__,
        documents=documents,
        chunks=chunks,
        collection=collection,
        embedding_model=docqa.embedder.model_id,
        generator=docqa.settings.answer.generator,
        components=components,
    )


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
