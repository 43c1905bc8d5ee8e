"""API keys from the command line (docs/api.md, "API keys and roles"): `conveyor keys
create|list|revoke`, and the development key `conveyor dev` makes on each start.

Whoever holds the database URL acts as the local admin (conveyor.ops.roles.LOCAL_ADMIN).
`keys create` prints the token alone on stdout (so `TOKEN=$(conveyor keys create ...)` takes
it) and the note that it will not be shown again on stderr."""

from __future__ import annotations

import click

from ..ops.keys import KeyInfo, Revoked, create_key, list_keys, revoke_key
from ..ops.roles import LOCAL_ADMIN, Role
from ..queue.client import Conveyor
from .common import Context, echo_json, handle_errors, json_option, run_coroutine, table, with_client

DEV_KEY_NAME = "dev"
ROLES = click.Choice([role.label for role in Role], case_sensitive=False)


@click.group()
def keys() -> None:
    """Make, list and revoke API keys for the HTTP API."""


@keys.command("create")
@click.option("--name", required=True, help="A name for the key: letters, digits and . _ @ -.")
@click.option(
    "--role", required=True, type=ROLES, help="viewer reads; operator also acts on jobs; admin does all."
)
@click.option("--replace", is_flag=True, help="Revoke the key of that name, if any, and make a new one.")
@json_option
@click.pass_obj
@handle_errors
def keys_create(ctx: Context, name: str, role: str, replace: bool, as_json: bool) -> None:
    """Make an API key and print its token, this once: it is stored hashed and never shown again."""

    async def make(client: Conveyor) -> tuple[KeyInfo, str]:
        return await create_key(client.db, LOCAL_ADMIN, name, role, replace=replace)

    info, token = run_coroutine(with_client(ctx, make))
    if as_json:
        echo_json({"key": info.as_dict(), "token": token})
    else:
        click.echo(token)
    click.echo(
        f"API key {info.id} {info.name!r} ({info.role.label}) created. Store its token now: it will not "
        f"be shown again. Send it as the header 'Authorization: Bearer <token>'.",
        err=True,
    )


@keys.command("list")
@click.option("--all", "everything", is_flag=True, help="Revoked keys too.")
@json_option
@click.pass_obj
@handle_errors
def keys_list(ctx: Context, everything: bool, as_json: bool) -> None:
    """API keys (never their tokens): id, name, role, the token's start, made, last used, revoked."""

    async def read(client: Conveyor) -> list[KeyInfo]:
        return await list_keys(client.db, LOCAL_ADMIN, include_revoked=everything)

    found = run_coroutine(with_client(ctx, read))
    if as_json:
        echo_json([info.as_dict() for info in found])
        return
    rows = [
        [k.id, k.name, k.role.label, f"cvk_{k.prefix}_...", k.created_at, k.last_used_at, k.revoked_at]
        for k in found
    ]
    click.echo(table(rows, ["id", "name", "role", "token", "created_at", "last_used_at", "revoked_at"]))


@keys.command("revoke")
@click.argument("id_or_name")
@json_option
@click.pass_obj
@handle_errors
def keys_revoke(ctx: Context, id_or_name: str, as_json: bool) -> None:
    """Revoke the key ID_OR_NAME (its id, or the name of a key not revoked): it stops working at once."""

    async def revoke(client: Conveyor) -> Revoked:
        return await revoke_key(client.db, LOCAL_ADMIN, id_or_name)

    done = run_coroutine(with_client(ctx, revoke))
    info = done.key
    if as_json:
        echo_json({"key": info.as_dict(), "already_revoked": done.already})
    elif done.already:
        click.echo(
            f"API key {info.id} {info.name!r} was revoked already, at {info.revoked_at:%Y-%m-%d %H:%M:%S%z}"
        )
    else:
        click.echo(f"API key {info.id} {info.name!r} revoked: requests with it are refused from now on")


async def make_dev_key(database_url: str, schema: str) -> tuple[KeyInfo, str]:
    """The admin key `conveyor dev` prints: a new one on each start, the one before revoked
    (a token is known only when it is made)."""
    async with Conveyor(database_url, schema=schema) as client:
        return await create_key(client.db, LOCAL_ADMIN, DEV_KEY_NAME, Role.ADMIN, replace=True)
