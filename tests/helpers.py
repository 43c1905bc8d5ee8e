"""Helpers shared by the tests: direct SQL, waiting on conditions, subprocess environments."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent


class DB:
    """Direct SQL for assertions: ``{schema}`` in the text is the test's schema."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema

    def _compose(self, query: str) -> sql.Composed:
        return sql.SQL(query).format(schema=sql.Identifier(self.schema))  # type: ignore[arg-type]

    def all(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(self._compose(query), params)
            return cur.fetchall() if cur.description else []

    def one(self, query: str, params: Any = None) -> Any:
        rows = self.all(query, params)
        assert len(rows) == 1, rows
        return rows[0][0] if len(rows[0]) == 1 else rows[0]

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, **kwargs)

    def compose(self, query: str) -> sql.Composed:
        return self._compose(query)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until true; the one place tests are allowed to poll."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {predicate}")
        await asyncio.sleep(interval)


def wait_until_sync(predicate: Callable[[], bool], *, within: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {predicate}")
        time.sleep(interval)


def subprocess_env(database_url: str, schema: str, **extra: str) -> dict[str, str]:
    """Environment for a `conveyor` process run by a test."""
    env = dict(os.environ)
    env.update(
        CONVEYOR_DATABASE_URL=database_url,
        CONVEYOR_SCHEMA=schema,
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update(extra)
    return env


def url_with_driver(database_url: str, scheme: str) -> str:
    """The test database as a URL with another scheme (``postgresql+psycopg``, ``postgres`` ...),
    the forms applications keep in DATABASE_URL."""
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    auth = str(info.get("user", ""))
    if info.get("password"):
        auth += f":{info['password']}"
    host, port = str(info.get("host", "")), info.get("port")
    query = ""
    if host.startswith("/"):  # a Unix socket (the embedded server) goes in the query
        host, query = "", f"?host={host}"
    where = f"{host}:{port}" if port and host else host
    if port and not host:
        query += f"&port={port}" if query else f"?port={port}"
    return f"{scheme}://{auth}{'@' if auth else ''}{where}/{info.get('dbname', '')}{query}"


class FreezingProxy:
    """A TCP proxy on loopback in front of a PostgreSQL server, able to fail as a NAT or a
    proxy that still acknowledges does: ``freeze()`` stops forwarding, both ways, on every
    connection it has and every one it gets, without closing any; ``heal()`` lets new
    connections through again while the frozen ones stay frozen (their path is gone for
    good); ``thaw()`` resumes everything. It runs its own event loop in a thread, so that
    synchronous tests and real processes can use it alike."""

    def __init__(self, database_url: str) -> None:
        import threading

        info = psycopg.conninfo.conninfo_to_dict(database_url)
        self._info = info
        host = str(info.get("host") or "127.0.0.1")
        port = int(info.get("port") or 5432)
        self._unix_path = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._generation = 0  # connections made before a heal stay frozen
        self._frozen_upto = float("-inf")  # connections of a generation below this are frozen
        self._thawed = asyncio.Event()
        self.held_back = 0  # bytes read and not forwarded while frozen
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freezing-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]

    def url(self) -> str:
        info = dict(self._info)
        info.update(host="127.0.0.1", port=str(self.port))
        return psycopg.conninfo.make_conninfo(**info)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._thawed.set()
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def _frozen(self, generation: int) -> bool:
        return generation < self._frozen_upto

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        self.connections += 1
        self._writers.add(writer)
        try:
            if self._unix_path is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer, generation),
            self._pump(up_reader, writer, generation),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, generation: int
    ) -> None:
        while data := await reader.read(65536):
            while self._frozen(generation):
                self.held_back += len(data)
                self._thawed.clear()
                await self._thawed.wait()
                self.held_back -= len(data)
            writer.write(data)
            await writer.drain()
        writer.close()

    def _call(self, action: Callable[[], None]) -> None:
        import concurrent.futures

        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            action()
            done.set_result(None)

        self._loop.call_soon_threadsafe(run)
        done.result(10)

    def freeze(self) -> None:
        def act() -> None:
            self._frozen_upto = float("inf")

        self._call(act)

    def heal(self) -> None:
        """New connections flow; the frozen ones stay frozen."""

        def act() -> None:
            self._generation += 1
            self._frozen_upto = self._generation

        self._call(act)

    def thaw(self) -> None:
        def act() -> None:
            self._frozen_upto = float("-inf")
            self._thawed.set()

        self._call(act)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgBouncer:
    """A PgBouncer of the test's own, in transaction mode, in front of the test server."""

    BINARIES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")

    @classmethod
    def binary(cls) -> str | None:
        import shutil

        return shutil.which("pgbouncer") or next((b for b in cls.BINARIES if os.path.exists(b)), None)

    def __init__(self, database_url: str, folder: Path, *, extra: str = "") -> None:
        import subprocess

        binary = self.binary()
        assert binary is not None, "pgbouncer is not installed (apt-get install -y pgbouncer)"
        info = psycopg.conninfo.conninfo_to_dict(database_url)
        self._info = info
        self.port = free_port()
        host = info.get("host") or "127.0.0.1"
        folder.chmod(0o777)
        (folder / "userlist.txt").write_text(f'"{info.get("user") or "postgres"}" ""\n')
        config = folder / "pgbouncer.ini"
        self.log = folder / "pgbouncer.log"
        config.write_text(
            "[databases]\n"
            f"* = host={host} port={info.get('port') or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {folder / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "default_pool_size = 4\n"
            "max_client_conn = 500\n"
            f"logfile = {folder / 'pgbouncer.log'}\n"
            f"{extra}\n"
        )
        command = [binary, str(config)]
        if os.geteuid() == 0:
            # It refuses to run as root. Run it as the user who owns the server's socket
            # folder (the embedded server's), who can reach it, or else as postgres.
            import pwd

            owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if str(host).startswith("/") else "postgres"
            command[1:1] = ["-u", "postgres" if owner == "root" else owner]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_sync(self._answers, within=10, interval=0.05)
        except BaseException:
            self.stop()
            raise AssertionError(f"pgbouncer did not start: {self.log.read_text()[-2000:]}") from None

    def _answers(self) -> bool:
        assert self.process.poll() is None, "pgbouncer exited"
        try:
            with psycopg.connect(self.url(), connect_timeout=2, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def url(self) -> str:
        info = dict(self._info)
        info.update(host="127.0.0.1", port=str(self.port))
        return psycopg.conninfo.make_conninfo(**info)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except Exception:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def pgbouncer(database_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer of the test's own in transaction mode, stopped after. Skips the test where
    PgBouncer is not installed, except in CI (CI=true), whose .ci/run installs it."""
    import tempfile

    import pytest

    if PgBouncer.binary() is None and os.environ.get("CI") != "true":
        pytest.skip("pgbouncer is not installed (Debian: apt-get install -y pgbouncer; .ci/run does it)")
    # Not under tmp_path: PgBouncer may run as another user (it refuses root), who must reach it.
    with tempfile.TemporaryDirectory(prefix="conveyor-pgbouncer-") as folder:
        pooler = PgBouncer(database_url, Path(folder))
        try:
            yield pooler
        finally:
            pooler.stop()
