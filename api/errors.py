"""One JSON error shape for every failure: `{"error": {"message", "type", "code", "param"}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorDetail, ErrorResponse
from docqa.errors import DocqaError
from docqa.logs import request_id

log = logging.getLogger("docqa.api")

_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(
    status: int, message: str, type_: str | None = None, param: str | None = None
) -> dict[str, Any]:
    rid = request_id.get()
    return ErrorResponse(
        error=ErrorDetail(
            message=message,
            type=type_ or _TYPES.get(status, "error"),
            code=status,
            param=param,
            request_id=None if rid == "-" else rid,
        )
    ).model_dump()


def error_response(
    status: int,
    message: str,
    type_: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(status, message, type_, param), status_code=status, headers=headers
    )


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route can answer with."""
    return {
        code: {"model": ErrorResponse, "description": _TYPES.get(code, "error")} for code in codes
    }


def _describe(err: dict[str, Any]) -> tuple[str, str | None]:
    loc = [str(p) for p in err.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]  # where in the request, not which field
    where = ".".join(loc)
    return (f"{where}: {err.get('msg')}" if where else str(err.get("msg"))), (where or None)


_PUBLIC_5XX = {
    "service_unavailable": "a service docqa depends on (model server, vector store, record "
    "store or Airflow) is not available; retry later. The server log has the details under "
    "this request id.",
    "configuration_error": "docqa is misconfigured; the server log says what to fix, under "
    "this request id.",
}


def public_message(exc: DocqaError) -> str:
    """What a client is told: the whole message for its own mistakes (4xx), a plain one for
    server-side failures (5xx), whose details (internal addresses, paths, library errors)
    stay in the server log."""
    if exc.status_code < 500:
        return exc.message
    return _PUBLIC_5XX.get(
        exc.error_type,
        f"{exc.error_type.replace('_', ' ')}; the server log has the details under this "
        "request id.",
    )


def unexpected_error_body() -> bytes:
    """The body of a 500 for an error docqa did not foresee: what happened is in the server
    log under the request id, never in the response."""
    import json

    return json.dumps(
        error_body(500, "internal error; the server log has the details under this request id")
    ).encode()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DocqaError)
    async def _docqa_error(_: Request, exc: DocqaError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s: %s", exc.error_type, exc.message)
        headers: dict[str, str] = {}
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return error_response(
            exc.status_code, public_message(exc), exc.error_type, exc.param, headers=headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_describe(e) for e in exc.errors()]
        message = "; ".join(p for p, _ in problems) or "invalid request"
        return error_response(422, message, param=problems[0][1] if problems else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))
