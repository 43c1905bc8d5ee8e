"""`conveyor grant`: give database roles exactly the privileges Conveyor's processes need
(docs/security.md, "Database roles").

Run by the schema's owner (the role that runs `conveyor migrate`), and again after every
migration: each role's privileges on the schema's objects become exactly those of its kind
(``grant_access_v1`` in sql/migrations/0015_database_roles.up.sql), whatever it held before.
The roles must exist (CREATE ROLE is the database administrator's). Prints each statement run.
"""

from __future__ import annotations

import click

from ..queue.client import Conveyor
from .common import Context, fail, handle_errors, run_coroutine, with_client


@click.command()
@click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="ROLE",
    help="A role for `conveyor worker` and `conveyor scheduler` (repeatable).",
)
@click.option(
    "--api",
    "apis",
    multiple=True,
    metavar="ROLE",
    help="A role for `conveyor api` and the dashboard (repeatable).",
)
@click.pass_obj
@handle_errors
def grant(ctx: Context, workers: tuple[str, ...], apis: tuple[str, ...]) -> None:
    """Grant database roles what workers and schedulers (--worker) or the API (--api) need, and no more."""
    if not workers and not apis:
        fail("name at least one role: --worker ROLE or --api ROLE")
    wanted = [(role, "worker") for role in workers] + [(role, "api") for role in apis]

    async def run(client: Conveyor) -> list[tuple[str, str, list[str]]]:
        done = []
        for role, access in wanted:
            rows = await client.db.fetch("grant_access", {"role": role, "access": access})
            done.append((role, access, [row[0] for row in rows]))
        return done

    for role, access, statements in run_coroutine(with_client(ctx, run)):
        click.echo(f"-- {role}: {access} access to schema {ctx.schema}")
        for statement in statements:
            click.echo(f"{statement};" if not statement.startswith("--") else statement)
