"""`conveyor api`: serve the HTTP API with uvicorn (one process, or --workers N)."""

from __future__ import annotations

import os
import sys

import click

from .. import event_loop
from ..settings import API_BODY_LIMIT, API_POOL_SIZE
from .common import Context, handle_errors, load_tasks, setup_logging
from .run import ApiPart, require_schema, serve


@click.command("api")
@click.option("--host", envvar="CONVEYOR_API_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port", envvar="CONVEYOR_API_PORT", type=click.IntRange(0, 65535), default=8000, show_default=True
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes (each with its own connection pool).",
)
@click.option(
    "--tasks",
    "tasks_modules",
    envvar="CONVEYOR_TASKS",
    default="tasks",
    show_default=True,
    help="Task modules to import, so that enqueued arguments are checked against their signatures "
    "(a task only workers import is enqueued by name).",
)
@click.option(
    "--body-limit",
    type=click.IntRange(min=1),
    default=API_BODY_LIMIT,
    show_default=True,
    help="The largest request body, in bytes.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    default=API_POOL_SIZE,
    show_default=True,
    help="Database connections per server process.",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="Log every request.")
@click.option("--verbose", "-v", is_flag=True)
@click.pass_obj
@handle_errors
def api(
    ctx: Context,
    host: str,
    port: int,
    workers: int,
    tasks_modules: str,
    body_limit: int,
    pool_size: int,
    access_log: bool,
    verbose: bool,
) -> None:
    """Serve the HTTP API (JSON under /api/v1, its OpenAPI document and docs page) until
    SIGTERM or Ctrl-C. Every request needs an API key: make one with `conveyor keys create`."""
    import uvicorn  # the server and the app take a while to import: only this command needs them

    from ..api.server import BODY_LIMIT_ENV, POOL_SIZE_ENV, TASKS_ENV, EmbeddedServer, bind, url_of

    setup_logging(ctx, verbose)
    load_tasks(tasks_modules, warn=True)
    url = ctx.database_url()
    require_schema(url, ctx.schema)
    sock = bind(host, port)
    loaded = [m.strip() for m in tasks_modules.split(",") if m.strip() in sys.modules]
    # Every server process makes its app from these (conveyor.api.server.app_from_environment).
    os.environ.update(
        {
            "CONVEYOR_DATABASE_URL": url,
            "CONVEYOR_SCHEMA": ctx.schema,
            "CONVEYOR_LOG_FORMAT": ctx.log_format,
            TASKS_ENV: ",".join(loaded),
            BODY_LIMIT_ENV: str(body_limit),
            POOL_SIZE_ENV: str(pool_size),
        }
    )
    root = url_of(sock)
    click.echo(
        f"Conveyor API: {root}/api/v1 (docs: {root}/api/v1/docs; dashboard: {root}/), "
        f"{workers} process(es); Ctrl-C to stop"
    )
    config = uvicorn.Config(
        "conveyor.api.server:app_from_environment",
        factory=True,
        host=host,
        port=sock.getsockname()[1],
        workers=workers,
        log_config=None,
        log_level="debug" if verbose else "info",
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=35,  # a result long-poll lasts at most 30 s
    )
    if workers == 1:
        # In this process, on Conveyor's event loop, stopped by its signal handlers (as the
        # worker is: SIGTERM or Ctrl-C stops it gracefully, a second Ctrl-C at once).
        event_loop.run(serve(api=ApiPart(EmbeddedServer(config), sock)))
        return
    # Several processes: uvicorn's supervisor binds the same address again and hands the
    # socket to each (the check above made sure it can be had, and which port 0 gave).
    sock.close()
    uvicorn.run(
        config.app,
        factory=True,
        host=host,
        port=config.port,
        workers=workers,
        log_config=None,
        log_level=config.log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=35,
    )
