"""Dependencies wired once, at the edge; tests swap them with `app.dependency_overrides`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Query, Request

from api.auth import KeyStore, Principal, Scope, authenticate, authorize, authorize_collection
from api.rate_limits import RateLimited, RateLimiter
from app import Docqa
from docqa.domain import COLLECTION_NAME_PATTERN, DEFAULT_COLLECTION
from docqa.settings import Settings
from ingestion.jobs import JobRunner


def get_docqa(request: Request) -> Docqa:
    return request.app.state.docqa  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.docqa.settings  # type: ignore[no-any-return]


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


COLLECTION_DESCRIPTION = (
    "The collection (tenant) to use. Default: the key's only collection when it is limited "
    "to one, else `default`. A key limited to other collections gets 403."
)


def default_collection(principal: Principal) -> str:
    """What a request that names no collection uses: a key limited to one collection
    means that one; everyone else means the default collection."""
    if principal.collections is not None and len(principal.collections) == 1:
        return principal.collections[0]
    return DEFAULT_COLLECTION


def tenant(request: Request, name: str | None) -> Docqa:
    """The parts of the collection `name` (or the caller's default), once the caller may
    use it.

    :raises Forbidden: (403) the key is limited to other collections.
    """
    principal = get_principal(request)
    name = name or default_collection(principal)
    authorize_collection(principal, name)
    return request.app.state.docqa.for_collection(name)  # type: ignore[no-any-return]


def get_tenant(
    request: Request,
    collection: Annotated[
        str | None,
        Query(pattern=COLLECTION_NAME_PATTERN, max_length=63, description=COLLECTION_DESCRIPTION),
    ] = None,
) -> Docqa:
    return tenant(request, collection)


TenantDep = Annotated[Docqa, Depends(get_tenant)]
DocqaDep = Annotated[Docqa, Depends(get_docqa)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
