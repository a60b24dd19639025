"""The web page at `/` and the API docs at `/docs` and `/redoc`, every byte served by docqa
itself: on an air-gapped network nothing is fetched from elsewhere.

The page is plain HTML, CSS and JavaScript modules under static/ (no build step). It talks
to the same /v1 API as any client, with the key a person pastes once. The Swagger UI and
ReDoc assets come from the fastapi-offline package (its static folder), not from a CDN.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
DOCS_ASSETS_URL = "/static/api-docs"
FAVICON = f"{STATIC_URL}/favicon.svg"

# What the page may load and talk to: only docqa. Styles may be inline for the eval
# reports the page shows (self-contained HTML with a <style> block, in a sandboxed frame
# that runs no script); scripts only from /static.
PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "frame-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
# The docs pages start Swagger UI and ReDoc with an inline script; everything else stays
# here too. ReDoc's menu shows a logo from its makers' CDN: this policy keeps the browser
# from asking for it (ReDoc then leaves the image out).
DOCS_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page() -> HTMLResponse:
    """The page: its HTML holds no data, so it is served without a key (the data it shows
    comes from the API, with the key pasted into it)."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=PAGE_HEADERS)


def _confined(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _docs_assets() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def install_web(app: FastAPI) -> None:
    """Serve the page, its static files and the API docs with local assets. `app` must be
    made with `docs_url=None, redoc_url=None` (FastAPI's own pages load from a CDN)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/", page, response_class=HTMLResponse)

    @router.get("/docs", response_class=HTMLResponse)
    def swagger_ui() -> HTMLResponse:
        return _confined(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} API",
                swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=FAVICON,
                oauth2_redirect_url=oauth2_redirect,
                # The validator badge would send the schema's URL to validator.swagger.io.
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )
        )

    @router.get(oauth2_redirect, response_class=HTMLResponse)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc", response_class=HTMLResponse)
    def redoc() -> HTMLResponse:
        return _confined(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} API",
                redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=FAVICON,
                with_google_fonts=False,
            )
        )

    app.include_router(router)
    # The more specific mount first: Starlette tries mounts in order.
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=_docs_assets()), name="api-docs-assets")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
