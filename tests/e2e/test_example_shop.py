"""The shop example (examples/shop, docs/examples.md) through real HTTP and a real worker:
the Starlette app and the FastAPI one, each served by uvicorn, with a `conveyor worker`
process running `examples.shop.tasks`.

- An order placed makes exactly one receipt job, which the worker runs (it reads the order's
  row, committed with it).
- An order that fails after its job was enqueued (more than the stock: the CHECK
  constraint refuses it) leaves neither the order's row nor its job.
- The Conveyor API mounted at /jobs lists the job to a viewer and an operator key, and to
  no one without a key.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from examples.shop import app as starlette_shop
from examples.shop import fastapi_app as fastapi_shop
from examples.shop.db import create_tables, make_engine
from psycopg import sql
from psycopg.types.json import Jsonb
from starlette.types import ASGIApp

from conveyor.db.database import Database
from conveyor.ops.keys import create_key
from conveyor.ops.roles import LOCAL_ADMIN

from ..helpers import DB, REPO, subprocess_env, url_with_driver, wait_until, wait_until_sync
from .api.support import Server, bearer

pytestmark = pytest.mark.processes

FRAMEWORKS: dict[str, Callable[..., ASGIApp]] = {
    "starlette": starlette_shop.create_shop,
    "fastapi": fastapi_shop.create_shop,
}


@pytest.fixture
def shop_url(database_url: str) -> str:
    """The test database as the shop's DATABASE_URL (a SQLAlchemy URL)."""
    return url_with_driver(database_url, "postgresql+psycopg")


@pytest.fixture
async def shop_schema(database_url: str, schema: str, shop_url: str) -> AsyncIterator[str]:
    """The shop's tables with the sample products, in a schema of this test's own."""
    name = f"shop_{schema}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(name))
        )
    engine = make_engine(shop_url, schema=name)
    try:
        await create_tables(engine)
    finally:
        await engine.dispose()
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(params=sorted(FRAMEWORKS))
def shop(request: pytest.FixtureRequest, shop_url: str, schema: str, shop_schema: str) -> Iterator[str]:
    """The shop served by uvicorn: its URL."""
    app = FRAMEWORKS[request.param](shop_url, conveyor_schema=schema, shop_schema=shop_schema)
    with Server(app) as server:
        yield server.url


@pytest.fixture
def worker(database_url: str, schema: str, shop_url: str, shop_schema: str, db: DB) -> Iterator[None]:
    """`conveyor worker --tasks examples.shop.tasks --queues emails`, registered."""
    env = subprocess_env(database_url, schema, DATABASE_URL=shop_url, SHOP_SCHEMA=shop_schema)
    command = [sys.executable, "-m", "conveyor", "worker", "--tasks", "examples.shop.tasks"]
    command += ["--queues", "emails", "--poll-interval", "0.2", "--grace", "1"]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until_sync(
            lambda: process.poll() is not None or db.one("SELECT count(*) FROM {schema}.workers") > 0,
            within=30,
        )
        assert process.poll() is None, process.communicate()[0]
        yield
    finally:
        if process.poll() is None:
            process.terminate()
        output = process.communicate(timeout=20)[0]
    assert "Traceback" not in output, output


@pytest.fixture
async def keys(database_url: str, schema: str) -> AsyncIterator[dict[str, str]]:
    """An API key per role below admin (`conveyor keys create` in a deployment)."""
    database = Database(database_url, schema)
    await database.open()
    try:
        yield {
            role: (await create_key(database, LOCAL_ADMIN, f"shop-{role}", role))[1]
            for role in ("viewer", "operator")
        }
    finally:
        await database.close()


def receipts(db: DB, order_id: int | None = None) -> int:
    """Receipt jobs wherever they are (waiting, running, finished, dead), for one order or all."""
    if order_id is None:
        return int(db.one("SELECT count(*) FROM {schema}.job_list WHERE task = 'send_receipt'"))
    return int(
        db.one(
            "SELECT count(*) FROM {schema}.job_list WHERE task = 'send_receipt' AND args = %s",
            [Jsonb({"order_id": order_id})],
        )
    )


def shop_rows(db: DB, shop_schema: str, query: str, params: Any = None) -> Any:
    return DB(db.url, shop_schema).one(query, params)


async def order(http: httpx.AsyncClient, status: int = 201, **wanted: Any) -> dict[str, Any]:
    response = await http.post("/orders", json=wanted)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_order_makes_one_receipt_job_that_a_worker_runs(
    shop: str, worker: None, keys: dict[str, str], db: DB, shop_schema: str
) -> None:
    async with httpx.AsyncClient(base_url=shop, timeout=30) as http:
        placed = await order(http, email="ada@example.com", sku="mug", quantity=2)
        assert placed["total_cents"] == 2400
        assert receipts(db, placed["id"]) == receipts(db) == 1

        # The worker runs it: the mounted API's long-poll returns its result once it completed.
        result = await http.get(
            f"/jobs/api/v1/jobs/{placed['receipt_job']}/result",
            params={"timeout": 20},
            headers=bearer(keys["viewer"]),
        )
        assert result.status_code == 200, result.text
        assert result.json()["result"] == {
            "order_id": placed["id"],
            "to": "ada@example.com",
            "total_cents": 2400,
        }
        shown = (await http.get(f"/orders/{placed['id']}")).json()
        assert shown["receipt_sent_at"] is not None

    assert receipts(db) == 1
    assert shop_rows(db, shop_schema, "SELECT stock FROM {schema}.products WHERE sku = 'mug'") == 98


async def test_a_failing_order_leaves_neither_its_row_nor_its_job(
    shop: str, worker: None, db: DB, shop_schema: str
) -> None:
    async with httpx.AsyncClient(base_url=shop, timeout=30) as http:
        first = await order(http, email="ada@example.com", sku="poster", quantity=1)
        # One poster is left: the stock update fails after the order row was written and its
        # job enqueued, and the transaction takes both back.
        refused = await order(http, 409, email="bob@example.com", sku="poster", quantity=2)
        assert "poster" in refused["detail"]
        assert shop_rows(db, shop_schema, "SELECT count(*) FROM {schema}.orders") == 1
        assert shop_rows(db, shop_schema, "SELECT stock FROM {schema}.products WHERE sku = 'poster'") == 1
        assert receipts(db) == 1
        assert receipts(db, first["id"]) == 1

        last = await order(http, email="cy@example.com", sku="mug", quantity=1)
        # The refused order did enqueue its job before it failed: the job's id was taken (an
        # identity is never given back), so the next job's id skips it.
        assert last["receipt_job"] == first["receipt_job"] + 2
        # and the refused order's id too; there is no order, and no job, for it.
        assert last["id"] == first["id"] + 2
        assert receipts(db, first["id"] + 1) == 0
        assert receipts(db) == 2

        await wait_until(
            lambda: db.one("SELECT count(*) FROM {schema}.job_list WHERE state = 'completed'") == 2, within=20
        )
    assert receipts(db) == 2

    async with httpx.AsyncClient(base_url=shop) as http:
        await order(http, 404, email="dee@example.com", sku="nothing", quantity=1)
        invalid = await http.post("/orders", json={"email": "not an address", "sku": "mug", "quantity": 0})
        assert invalid.status_code == 422, invalid.text
    assert receipts(db) == 2
    assert shop_rows(db, shop_schema, "SELECT count(*) FROM {schema}.orders") == 2


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_the_mounted_api_lists_the_receipt_job(
    shop: str, keys: dict[str, str], role: str, db: DB
) -> None:
    async with httpx.AsyncClient(base_url=shop, timeout=30) as http:
        placed = await order(http, email="ada@example.com", sku="mug", quantity=1)
        jobs = await http.get(
            "/jobs/api/v1/jobs", params={"task": "send_receipt"}, headers=bearer(keys[role])
        )
        assert jobs.status_code == 200, jobs.text
        assert [job["id"] for job in jobs.json()["jobs"]] == [placed["receipt_job"]]
        detail = (
            await http.get(f"/jobs/api/v1/jobs/{placed['receipt_job']}", headers=bearer(keys[role]))
        ).json()
        assert (detail["task"], detail["queue"], detail["args"]) == (
            "send_receipt",
            "emails",
            {"order_id": placed["id"]},
        )
        queues = (await http.get("/jobs/api/v1/queues", headers=bearer(keys[role]))).json()["queues"]
        assert {"queue": "emails", "waiting": 1} in [{k: q[k] for k in ("queue", "waiting")} for q in queues]

        refused = await http.get("/jobs/api/v1/jobs")
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert receipts(db) == 1
