"""`docqa keys ...`: API keys with a scope and, optionally, the collections they may use."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from api.auth import KeyStore, Scope, StoredKey
from cli.console import State, out, run_guarded

keys_app = typer.Typer(
    help="Create, list and revoke API keys (stored hashed in the record store).",
    no_args_is_help=True,
)


def _store() -> KeyStore:
    return KeyStore(State.settings().resolved_database_url)


def _as_json(key: StoredKey) -> dict[str, object]:
    return {
        "id": key.key_id,
        "name": key.name,
        "scope": key.scope.label,
        "collections": key.collections,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in lists).")],
    scope: Annotated[
        str,
        typer.Option(
            help="ask (search, ask, chat, models, feedback), write (ask + upload, delete, "
            "sync) or admin (everything: keys, eval, re-index)."
        ),
    ] = "ask",
    collection: Annotated[
        list[str] | None,
        typer.Option(help="Limit the key to this collection (repeat); default: every one."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key as JSON.")] = False,
) -> None:
    """Make a key and print it once: it is stored only as a digest and cannot be shown
    again."""
    parsed = run_guarded(lambda: Scope.parse(scope))
    key, secret = run_guarded(lambda: _store().create(name, parsed, collection or None))
    if as_json:
        body = {
            "id": key.key_id,
            "key": secret,
            "scope": key.scope.label,
            "collections": key.collections,
        }
        out.print_json(json.dumps(body))
        return
    out.print(secret, highlight=False, soft_wrap=True)
    where = ", ".join(key.collections) if key.collections else "every collection"
    out.print(
        f"key {key.key_id} ({key.name}): scope {key.scope.label}, {where}. Keep it now: it "
        "is not shown again.",
        highlight=False,
        style="dim",
    )


@keys_app.command("list")
def list_keys(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every key, active and revoked (never the secrets)."""
    keys = run_guarded(lambda: _store().list())
    if as_json:
        out.print_json(json.dumps([_as_json(k) for k in keys]))
        return
    table = Table("id", "name", "scope", "collections", "created (UTC)", "state")
    for k in keys:
        table.add_row(
            k.key_id,
            k.name,
            k.scope.label,
            ", ".join(k.collections) if k.collections else "all",
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            "revoked" if k.revoked_at else "active",
        )
    out.print(table)
    out.print(f"{sum(k.active for k in keys)} active, {len(keys)} in all", highlight=False)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (`docqa keys list`).")],
) -> None:
    """Stop a key from working (within seconds on every API replica)."""
    key = run_guarded(lambda: _store().revoke(key_id))
    out.print(f"revoked {key.key_id} ({key.name})", highlight=False)
