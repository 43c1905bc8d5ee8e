"""The API mounted under /jobs in a Starlette app and in a FastAPI app, served by uvicorn: the
mounted app's lifespan never runs, so its client opens on first use; the OpenAPI document
and docs page name the mount point; the host's own routes and its client live beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from conveyor import Conveyor
from conveyor.api import create_app

from ...helpers import DB
from .support import Keys, Server, bearer, problem

pytestmark = pytest.mark.processes


async def check_mounted(url: str, keys: Keys, db: DB) -> None:
    async with httpx.AsyncClient(base_url=url, headers=bearer(keys.operator)) as http:
        assert (await http.get("/jobs/api/v1/queues")).status_code == 200
        job = await http.post("/jobs/api/v1/jobs", json={"task": "api_add", "args": {"a": 1, "b": 1}})
        assert job.status_code == 201, job.text
        assert db.one("SELECT task FROM {schema}.jobs WHERE id = %s", [job.json()["id"]]) == "api_add"
        doc = (await http.get("/jobs/api/v1/openapi.json")).json()
        assert doc["servers"] == [{"url": "/jobs"}]
        page = (await http.get("/jobs/api/v1/docs")).text
        assert 'href="/jobs/api/v1/openapi.json"' in page
        problem(await http.get("/jobs/api/v1/nothing"), 404, "no-such-endpoint")
        problem(await http.get("/jobs/api/v1/queues", headers={"Authorization": ""}), 401, "unauthenticated")
        assert (await http.get("/hello")).json() == {"hello": "host"}
        assert (await http.get("/jobs/health")).json()["status"] in ("ok", "degraded")
        assert (await http.get("/jobs/metrics")).status_code == 200


async def hello(request: Request) -> Response:
    return JSONResponse({"hello": "host"})


async def test_a_host_endpoint_enqueues_through_the_apps_own_client(
    database_url: str, schema: str, keys: Keys, db: DB, serve: Callable[[ASGIApp], Server]
) -> None:
    """Before any request to the API, the app's client is opened on a host endpoint's asking."""
    api = create_app(database_url=database_url, schema=schema)

    async def signup(request: Request) -> Response:
        client: Conveyor = await api.state.open_conveyor()
        return JSONResponse({"job": await client.enqueue("api_echo", {"value": "hi"})})

    host = Starlette(routes=[Route("/signup", signup, methods=["POST"]), Mount("/jobs", app=api)])
    async with httpx.AsyncClient(base_url=serve(host).url) as http:
        job_id = (await http.post("/signup")).json()["job"]
    assert db.one("SELECT args FROM {schema}.jobs WHERE id = %s", [job_id]) == {"value": "hi"}


async def test_mounted_in_a_starlette_app(
    database_url: str, schema: str, keys: Keys, db: DB, serve: Callable[[ASGIApp], Server]
) -> None:
    api = create_app(database_url=database_url, schema=schema)
    host = Starlette(routes=[Route("/hello", hello), Mount("/jobs", app=api)])
    await check_mounted(serve(host).url, keys, db)


async def test_mounted_in_a_fastapi_app(
    database_url: str, schema: str, keys: Keys, db: DB, serve: Callable[[ASGIApp], Server]
) -> None:
    host = FastAPI()

    @host.get("/hello")
    async def fastapi_hello() -> dict[str, str]:
        return {"hello": "host"}

    host.mount("/jobs", create_app(database_url=database_url, schema=schema))
    await check_mounted(serve(host).url, keys, db)


async def test_a_host_that_owns_the_client_enqueues_through_it_and_closes_it(
    database_url: str, schema: str, keys: Keys, db: DB, serve: Callable[[ASGIApp], Server]
) -> None:
    """The host opens the client in its lifespan and passes it: the API uses it, and leaves
    closing it to the host."""
    client = Conveyor(database_url, schema=schema)
    closed: list[bool] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client:
            yield
            closed.append(False)  # still open when the host's lifespan ends: the API left it
            client.db  # noqa: B018 - raises if closed
        closed[-1] = True

    host = FastAPI(lifespan=lifespan)
    api = create_app(client)

    @host.post("/signup")
    async def signup() -> dict[str, int]:
        return {"job": await client.enqueue("api_echo", {"value": "welcome"})}

    host.mount("/jobs", api)
    server = serve(host)
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(keys.viewer)) as http:
        job_id = (await http.post("/signup")).json()["job"]
        detail = await http.get(f"/jobs/api/v1/jobs/{job_id}")
        assert detail.json()["args"] == {"value": "welcome"}
    server.__exit__()
    assert closed == [True]
    assert api.state.conveyor is client


async def test_a_host_that_runs_the_apps_lifespan(
    database_url: str, schema: str, keys: Keys, serve: Callable[[ASGIApp], Server]
) -> None:
    """docs/api.md: a host may run the mounted app's lifespan in its own; the client the app
    made is then opened at start and closed at the end."""
    api = create_app(database_url=database_url, schema=schema)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with api.router.lifespan_context(api):
            yield

    server = serve(Starlette(routes=[Mount("/jobs", app=api)], lifespan=lifespan))
    client: Conveyor = api.state.conveyor
    client.db  # noqa: B018 - open since the start, before any request
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(keys.viewer)) as http:
        assert (await http.get("/jobs/api/v1/queues")).status_code == 200
    server.__exit__()
    with pytest.raises(Exception, match="not open"):
        client.db  # noqa: B018
