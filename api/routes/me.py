"""Who is calling: the key's name and scope, so a client (the web page) shows only what
the key may do."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import PrincipalDep

router = APIRouter(tags=["operations"])


class CallerOut(BaseModel):
    key_id: str = Field(description="The key's id; `bootstrap` or `anonymous` for those.")
    name: str
    scope: Literal["ask", "write", "admin"] = Field(
        description="ask: search, ask, feedback; write: also upload and delete; admin: "
        "everything, evaluation included."
    )
    collections: list[str] | None = Field(description="Collections the key may use; null: all.")
    authentication: bool = Field(
        description="False while authentication is off (no key exists, loopback only)."
    )


@router.get("/me", response_model=CallerOut, summary="The calling key: its name and scope")
def me(caller: PrincipalDep) -> CallerOut:
    return CallerOut(
        key_id=caller.key_id,
        name=caller.name,
        scope=caller.scope.label,  # type: ignore[arg-type]
        collections=list(caller.collections) if caller.collections is not None else None,
        authentication=caller.key_id != "anonymous",
    )
