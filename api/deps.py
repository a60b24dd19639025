"""Dependencies wired once, at the edge; tests swap them with `app.dependency_overrides`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from api.auth import KeyStore, Principal, Scope, authenticate, authorize
from api.rate_limits import RateLimited, RateLimiter
from app import Docqa
from docqa.settings import Settings
from inference.answering import AnsweringService
from ingestion.jobs import JobRunner
from retrieval.protocols import Retriever


def get_docqa(request: Request) -> Docqa:
    return request.app.state.docqa  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.docqa.settings  # type: ignore[no-any-return]


def get_answering(request: Request) -> AnsweringService:
    return request.app.state.docqa.answering  # type: ignore[no-any-return]


def get_retriever(request: Request) -> Retriever:
    return request.app.state.docqa.retriever  # type: ignore[no-any-return]


def get_jobs(request: Request) -> JobRunner:
    return request.app.state.jobs  # type: ignore[no-any-return]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def get_principal(request: Request) -> Principal:
    """Who calls (once per request): the bootstrap key, a stored key, or anonymous while
    authentication is off.

    :raises Unauthorized: a key is needed and none, or a wrong one, came.
    """
    principal = getattr(request.state, "principal", None)
    if principal is None:
        keys: KeyStore = request.app.state.keys
        bootstrap = request.app.state.docqa.settings.api.api_key
        principal = authenticate(bearer_token(request), bootstrap, keys)
        request.state.principal = principal
    return principal  # type: ignore[no-any-return]


def require(scope: Scope) -> Callable[[Request], Principal]:
    """A dependency for routes that need `scope`: authenticates, authorizes and counts the
    request against the key's rate limit.

    :raises Unauthorized: (401) no key or a wrong one; :raises Forbidden: (403) the key's
        scope is too low; :raises RateLimited: (429) the key is past its limit.
    """

    def check(request: Request) -> Principal:
        principal = get_principal(request)
        authorize(principal, scope)
        limiter: RateLimiter = request.app.state.rate_limiter
        if principal.key_id == "anonymous":
            identity, limits = f"ip:{request.client.host if request.client else '-'}", "anonymous"
        else:
            identity, limits = f"key:{principal.key_id}", principal.scope.label
        verdict = limiter.hit(identity, limits)
        if not verdict.allowed:
            raise RateLimited(
                f"rate limit {verdict.limit} reached for this key; retry in "
                f"{verdict.retry_after_s} s",
                retry_after_s=verdict.retry_after_s,
            )
        return principal

    return check


DocqaDep = Annotated[Docqa, Depends(get_docqa)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
AnsweringDep = Annotated[AnsweringService, Depends(get_answering)]
RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
