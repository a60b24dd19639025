"""Who may call what: API keys with scopes, the bootstrap key, and the auth matrix of every
/v1 route (no key, a wrong key, and keys of each scope), over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute
from typer.testing import CliRunner

from api.auth import KeyStore, Scope
from api.main import create_app
from cli.main import app as cli

ASK, WRITE, ADMIN = Scope.ASK, Scope.WRITE, Scope.ADMIN

# Every /v1 route, the scope it needs and a request that reaches it. A route missing here
# fails test_the_matrix_covers_every_route: a new route needs a deliberate scope.
ROUTES: list[tuple[str, str, Scope, dict[str, Any]]] = [
    ("GET", "/v1/models", ASK, {}),
    (
        "POST",
        "/v1/chat/completions",
        ASK,
        {"json": {"messages": [{"role": "user", "content": "hi"}]}},
    ),
    ("POST", "/v1/search", ASK, {"json": {"query": "leave"}}),
    ("POST", "/v1/ask", ASK, {"json": {"question": "How much leave?"}}),
    ("GET", "/v1/passages/{chunk_id}", ASK, {}),
    (
        "POST",
        "/v1/feedback",
        ASK,
        {"json": {"rating": "up", "question": "How much leave?", "answer": "25 days."}},
    ),
    ("GET", "/v1/me", ASK, {}),
    ("GET", "/v1/documents", WRITE, {}),
    (
        "POST",
        "/v1/documents",
        WRITE,
        {"files": [("files", ("memo.txt", b"The canteen opens at noon."))]},
    ),
    ("GET", "/v1/documents/{document_id}", WRITE, {}),
    ("DELETE", "/v1/documents/{document_id}", WRITE, {}),
    ("GET", "/v1/jobs/{job_id}", WRITE, {}),
    ("GET", "/v1/eval/runs", ADMIN, {}),
    ("GET", "/v1/eval/runs/{run_id}", ADMIN, {}),
    ("GET", "/v1/eval/runs/{run_id}/report", ADMIN, {}),
]
PATH_VALUES = {
    "document_id": "doc_nothing",
    "job_id": "job_nothing",
    "run_id": "latest",
    "chunk_id": "doc_nothing:x:00001",
}

# Everything outside /v1 answers without a key, so none of it may hold documents, answers
# or anything of a key: the web page is HTML and code only (what it shows comes from /v1
# with the key pasted into it), the docs show the schema, the probes say up or down. A new
# route outside /v1 fails test_every_route_outside_v1_is_declared_public until listed here.
PUBLIC = {
    "/": "the web page: HTML without data",
    "/static": "the page's CSS, JavaScript and icon",
    "/static/api-docs": "Swagger UI and ReDoc assets (fastapi-offline)",
    "/docs": "Swagger UI",
    "/docs/oauth2-redirect": "Swagger UI's OAuth2 redirect page",
    "/redoc": "ReDoc",
    "/openapi.json": "the schema",
    "/livez": "probe",
    "/readyz": "probe: up or down only without a key",
    "/healthz": "probe: up or down only without a key",
    "/metrics": "Prometheus; DOCQA_API__METRICS_REQUIRE_KEY asks for an admin key",
}
PUBLIC_REQUESTS = [
    "/",
    "/static/app.css",
    "/static/js/app.js",
    "/static/favicon.svg",
    "/static/api-docs/swagger-ui-bundle.js",
    "/static/api-docs/swagger-ui.css",
    "/static/api-docs/redoc.standalone.js",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
]


def _path(template: str) -> str:
    return template.format(**PATH_VALUES)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, embedder):
    """A live server with a bootstrap key and one stored key per scope."""
    import httpx

    from app import Docqa
    from docqa.settings import load_settings
    from tests.fakes.loopback import serve

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("access") / "data", api={"api_key": "bootstrap-secret"}
    )
    dq = Docqa(settings, embedder=embedder)
    store = KeyStore(settings.resolved_database_url)
    keys = {scope: store.create(f"{scope.label} user", scope)[1] for scope in Scope}
    served = serve(create_app(docqa=dq))
    client = httpx.Client(base_url=served.url, timeout=60)
    yield client, keys, settings
    client.close()
    served.stop()


def _call(client, method: str, template: str, token: str | None, extra: dict[str, Any]):
    # As bytes: a client may send any octets (defect: a non-ASCII token gave a 500).
    headers = {"Authorization": f"Bearer {token}".encode()} if token is not None else {}
    return client.request(method, _path(template), headers=headers, **extra)


def test_the_matrix_covers_every_route(tmp_path) -> None:
    from docqa.settings import load_settings

    served = {
        (method, route.path)
        for route in create_app(load_settings(data_dir=tmp_path)).routes
        if isinstance(route, APIRoute) and route.path.startswith("/v1")
        for method in route.methods
    }
    assert served == {(m, p) for m, p, _, _ in ROUTES}


def test_every_route_outside_v1_is_declared_public(tmp_path) -> None:
    from docqa.settings import load_settings

    app = create_app(load_settings(data_dir=tmp_path))
    outside = {r.path for r in app.routes if not r.path.startswith("/v1")}  # type: ignore[attr-defined]
    assert outside == set(PUBLIC)


@pytest.mark.parametrize("path", PUBLIC_REQUESTS)
def test_the_page_and_the_api_docs_answer_without_a_key(keyed, path: str) -> None:
    client, _, _ = keyed
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.content


def test_me_tells_each_key_its_scope(keyed) -> None:
    client, keys, _ = keyed
    for scope, key in keys.items():
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
        assert me["scope"] == scope.label and me["name"] == f"{scope.label} user"
        assert me["authentication"] is True and me["collections"] is None
    bootstrap = client.get("/v1/me", headers={"Authorization": "Bearer bootstrap-secret"})
    assert bootstrap.json()["key_id"] == "bootstrap" and bootstrap.json()["scope"] == "admin"


@pytest.mark.parametrize(("method", "template", "needed", "extra"), ROUTES)
def test_auth_matrix(keyed, method, template, needed, extra) -> None:
    client, keys, _ = keyed
    for token in (None, "wrong", "dq_000000000000_forged", "clé-non-ascii-ü"):
        response = _call(client, method, template, token, extra)
        assert response.status_code == 401, (token, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "unauthorized"
    for scope, key in keys.items():
        response = _call(client, method, template, key, extra)
        if scope < needed:
            assert response.status_code == 403, (scope, response.text)
            error = response.json()["error"]
            assert error["type"] == "forbidden" and needed.label in error["message"]
        else:
            assert response.status_code not in (401, 403, 429, 500), (scope, response.text)
    bootstrap = _call(client, method, template, "bootstrap-secret", extra)
    assert bootstrap.status_code not in (401, 403, 500), bootstrap.text


def test_keys_are_made_listed_and_revoked_from_the_cli(keyed, monkeypatch) -> None:
    client, _, settings = keyed
    monkeypatch.setenv("DOCQA_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "--name", "ci bot", "--scope", "ask", "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)
    assert key["scope"] == "ask" and key["collections"] is None and key["key"].startswith("dq_")
    auth = {"Authorization": f"Bearer {key['key']}"}
    assert client.get("/v1/models", headers=auth).status_code == 200

    listed = json.loads(runner.invoke(cli, ["keys", "list", "--json"]).output)
    mine = next(k for k in listed if k["id"] == key["id"])
    assert mine["name"] == "ci bot" and mine["revoked_at"] is None
    assert key["key"] not in json.dumps(listed)  # the secret is never shown again

    assert runner.invoke(cli, ["keys", "revoke", key["id"]]).exit_code == 0
    # A server trusts what it read for at most KEY_CACHE_S; a fresh reader sees it now.
    assert KeyStore(settings.resolved_database_url).verify(key["key"]) is None

    bad = runner.invoke(cli, ["keys", "create", "--name", "x", "--scope", "root"])
    assert bad.exit_code == 2 and "use ask, write or admin" in bad.output
    unknown = runner.invoke(cli, ["keys", "revoke", "nope"])
    assert unknown.exit_code == 2 and "no key with id" in unknown.output


def test_keys_are_stored_as_digests_only(keyed) -> None:
    _, keys, settings = keyed
    from sqlalchemy import text

    from docqa.db import get_engine

    with get_engine(settings.resolved_database_url).connect() as conn:
        stored = json.dumps([list(r) for r in conn.execute(text("select * from docqa_api_keys"))])
    for key in keys.values():
        secret = key.split("_", 2)[2]  # dq_<id>_<secret>; the secret may hold "_" itself
        assert key not in stored and secret not in stored


def test_auth_is_off_on_loopback_until_a_key_exists(make_docqa) -> None:
    import httpx

    from tests.fakes.loopback import serve

    app = create_app(docqa=make_docqa())
    served = serve(app)
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            assert client.get("/v1/documents").status_code == 200
            _, secret = app.state.keys.create("first key", Scope.ADMIN)
            assert client.get("/v1/documents").status_code == 401
            auth = {"Authorization": f"Bearer {secret}"}
            assert client.get("/v1/documents", headers=auth).status_code == 200
    finally:
        served.stop()
