"""Helpers of the HTTP API's tests: a uvicorn server in a thread, keys, worker processes,
and a checker of problem documents."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from conveyor.db.database import Database
from conveyor.ops.keys import create_key, revoke_key
from conveyor.ops.roles import LOCAL_ADMIN

from ...helpers import DB, REPO, subprocess_env, wait_until_sync
from .. import api_tasks

ROLES = ("viewer", "operator", "admin")


class Server:
    """uvicorn serving an ASGI app on 127.0.0.1 and a free port, in a thread of its own."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        wait_until_sync(lambda: self.server.started or not self.thread.is_alive(), within=20)
        assert self.server.started, "uvicorn did not start"
        return self

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@dataclass
class Keys:
    """A token per role (``keys.admin`` ...), and a revoked one."""

    viewer: str
    operator: str
    admin: str
    revoked: str

    def __getitem__(self, role: str) -> str:
        return str(getattr(self, role))


async def make_keys(database_url: str, schema: str, label: str = "test") -> Keys:
    """A key of each role and a revoked admin key, made through the one service layer."""
    database = Database(database_url, schema)
    await database.open()
    try:
        tokens = {}
        for role in ROLES:
            _, tokens[role] = await create_key(database, LOCAL_ADMIN, f"{label}-{role}", role)
        info, tokens["revoked"] = await create_key(database, LOCAL_ADMIN, f"{label}-revoked", "admin")
        await revoke_key(database, LOCAL_ADMIN, info.id)
        return Keys(**tokens)
    finally:
        await database.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Workers:
    """``conveyor worker`` processes running tests.e2e.api_tasks; none outlives the test."""

    def __init__(self, database_url: str, schema: str) -> None:
        self.env = subprocess_env(database_url, schema)
        self.db = DB(database_url, schema)
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str, tasks: str = "tests.e2e.api_tasks") -> subprocess.Popen[str]:
        """Start a worker and wait until it has registered (its tasks are recorded then)."""
        before = self.db.one("SELECT count(*) FROM {schema}.workers")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "worker",
                "--tasks",
                tasks,
                "--queues",
                api_tasks.QUEUE,
                "--poll-interval",
                "0.2",
                "--grace",
                "1",
                *args,
            ],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        wait_until_sync(
            lambda: (
                process.poll() is not None or self.db.one("SELECT count(*) FROM {schema}.workers") > before
            ),
            within=30,
        )
        assert process.poll() is None, process.communicate()[0]
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
            try:
                process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=10)


def problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response's problem document, checked: its status, media type and fields."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:conveyor:problem:")
    assert body["title"]
    assert body["detail"]
    if slug is not None:
        assert body["type"] == f"urn:conveyor:problem:{slug}", body
    return body
