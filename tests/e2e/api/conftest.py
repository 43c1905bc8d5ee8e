"""Fixtures of the HTTP API's tests: the API served by uvicorn on a free port (in a thread
of this process), API keys of each role, and ``conveyor worker`` processes.

Everything goes through real HTTP (httpx) to a real server on a real database; assertions
about state read the database directly (tests.helpers.DB).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from starlette.types import ASGIApp

from conveyor.api import create_app

from .. import api_tasks
from .support import Keys, Server, Workers, bearer, make_keys


@pytest.fixture
def serve() -> Iterator[Callable[[ASGIApp], Server]]:
    """``serve(app)``: a started Server, stopped after the test."""
    started: list[Server] = []

    def start(app: ASGIApp) -> Server:
        server = Server(app).__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__()


@pytest.fixture
def api_url(database_url: str, schema: str, serve: Callable[[ASGIApp], Server]) -> str:
    """The URL of the API on this test's schema, knowing the tasks of tests.e2e.api_tasks."""
    assert api_tasks.QUEUE  # imported: its tasks are registered here
    return serve(create_app(database_url=database_url, schema=schema)).url


@pytest.fixture
async def keys(database_url: str, schema: str) -> Keys:
    return await make_keys(database_url, schema)


@pytest.fixture
async def http(api_url: str, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the API, sending the admin key unless a request says otherwise."""
    async with httpx.AsyncClient(base_url=api_url, headers=bearer(keys.admin), timeout=60) as client:
        yield client


@pytest.fixture
def workers(database_url: str, schema: str) -> Iterator[Workers]:
    pool = Workers(database_url, schema)
    try:
        yield pool
    finally:
        pool.stop_all()
