"""The ``conveyor`` command group and its global options."""

from __future__ import annotations

import click

from ..errors import ConveyorError
from .common import DEFAULT_DATA_DIR, Context, fail


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database-url", envvar="CONVEYOR_DATABASE_URL", help="PostgreSQL URL (else DATABASE_URL).")
@click.option("--schema", envvar="CONVEYOR_SCHEMA", default="conveyor", show_default=True)
@click.option(
    "--data-dir",
    envvar="CONVEYOR_DATA_DIR",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where `conveyor dev` keeps the embedded database.",
)
@click.option(
    "--log-format",
    envvar="CONVEYOR_LOG_FORMAT",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines of worker, scheduler and dev as text or as JSON objects, one a line.",
)
@click.pass_context
def main(
    click_ctx: click.Context, database_url: str | None, schema: str, data_dir: str, log_format: str
) -> None:
    """Conveyor: background jobs and schedules on PostgreSQL."""
    try:
        click_ctx.obj = Context(database_url, schema, data_dir, log_format=log_format)
    except ConveyorError as exc:
        fail(str(exc))
