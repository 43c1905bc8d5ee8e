"""The placement app in one command, as ``conveyor dev`` runs Conveyor: the embedded PostgreSQL
(unless DATABASE_URL is set), migrated for Conveyor and the app's tables, then the app (with
Conveyor's API and dashboard under /jobs), a worker and a scheduler, in one process.

    python -m examples.placement [--host 127.0.0.1] [--port 8000] [--data-dir .conveyor/placement]
    python -m examples.placement --setup      # migrate and make the tables only (a release step)

It prints the app's address and an admin API key for the dashboard (a new one each run).
Ctrl-C (or SIGTERM) stops it: running jobs get 10 s to finish.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import uvicorn

from conveyor import ConfigurationError, Worker, WorkerConfig, event_loop
from conveyor.api.server import EmbeddedServer, bind, url_of
from conveyor.cli.keys import make_dev_key
from conveyor.cli.run import ApiPart, serve
from conveyor.db import embedded, migrations
from conveyor.logs import configure_logging
from conveyor.queue.scheduler import Scheduler
from conveyor.settings import Settings

from .app import JOBS, create_placement
from .db import create_tables, use_database


def say(line: str) -> None:
    print(f"Placement: {line}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.placement", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    parser.add_argument("--data-dir", type=Path, default=Path(".conveyor/placement"))
    parser.add_argument("--setup", action="store_true", help="migrate, make the tables, and exit")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        start(args)
    except ConfigurationError as exc:  # no embedded PostgreSQL, a port in use, a bad setting
        raise SystemExit(f"Placement: error: {exc}") from None


def start(args: argparse.Namespace) -> None:
    sock = None if args.setup else bind(args.host, args.port)  # a port in use fails before anything starts
    settings = Settings.from_env()
    url = settings.database_url
    if url is None:
        embedded.check_installed()
        say(f"starting the embedded PostgreSQL in {args.data_dir / 'pgdata'}/ ...")
        url = embedded.start(args.data_dir / "pgdata", database="placement")
        say(f"database {url}")
    migrations.upgrade(url, settings.schema)
    if sock is None:
        event_loop.run(setup(url))
        say(f"Conveyor's schema {settings.schema!r} and the placement tables are ready")
        return
    os.environ.setdefault("CONVEYOR_EXPORTS_DIR", str((args.data_dir / "exports").resolve()))
    event_loop.run(run(url, settings.schema, sock))


async def setup(url: str) -> None:
    engine = use_database(url)
    try:
        await create_tables(engine)
    finally:
        await engine.dispose()


async def run(url: str, schema: str, sock: socket.socket) -> None:
    """The app's tables, this run's API key, then the app, a worker and a scheduler until a signal."""
    await setup(url)
    _, token = await make_dev_key(url, schema)
    app = create_placement(url, conveyor_schema=schema)
    server = EmbeddedServer(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    root = url_of(sock)
    say(f"open {root}/drives")
    say(f"jobs dashboard {root}{JOBS}/ and API {root}{JOBS}/api/v1; sign in with this run's admin key:")
    say(f"key {token}")
    if not os.environ.get("CONVEYOR_SMTP_HOST"):
        say("no CONVEYOR_SMTP_HOST: the nightly summary e-mail fails until it is set (see docs/examples.md)")
    worker = Worker(url, schema=schema, config=WorkerConfig(grace=10))
    await serve(worker, Scheduler(url, schema=schema), ApiPart(server, sock))


if __name__ == "__main__":
    main()
