"""Dependencies wired once, at the edge; tests swap them with `app.dependency_overrides`."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

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


def require_api_key(request: Request) -> None:
    """With DOCQA_API__API_KEY set, every /v1 call needs `Authorization: Bearer <key>`."""
    key = request.app.state.docqa.settings.api.api_key
    if not key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), key):
        raise HTTPException(
            401,
            "missing or wrong API key: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )


DocqaDep = Annotated[Docqa, Depends(get_docqa)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
AnsweringDep = Annotated[AnsweringService, Depends(get_answering)]
RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
