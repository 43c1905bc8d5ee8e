"""Findings of a review of the API's key cache (conveyor.ops.key_cache), each shown through
HTTP on uvicorn and a real database: a key change that commits must hold for the very next
request, whatever the state of the schema, and a request that waited for the change to commit
must be judged by it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from starlette.types import ASGIApp

from conveyor.api import create_app
from conveyor.db import migrations

from ...helpers import DB, wait_until
from .. import api_tasks
from .support import Keys, Server, bearer

pytestmark = pytest.mark.processes

BEFORE_0013 = "0012_metric_totals"


@pytest.mark.timeout(120)
async def test_a_revoke_holds_at_once_when_the_schema_announces_no_key_changes(
    database_url: str, schema: str, keys: Keys, db: DB, serve: Callable[[ASGIApp], Server]
) -> None:
    """The API runs while migration 0013 is downgraded (or before it is applied: the code is
    deployed first). No trigger announces key changes any more, so the cache must not remember
    keys: a revoke by an UPDATE must hold for the next request, as it did before the cache."""
    assert api_tasks.QUEUE
    url = serve(create_app(database_url=database_url, schema=schema)).url
    async with httpx.AsyncClient(base_url=url, headers=bearer(keys.viewer), timeout=30) as http:
        assert (await http.get("/api/v1/queues")).status_code == 200  # LISTEN is up after this
        await wait_until(
            lambda: bool(
                db.one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query LIKE 'LISTEN %%keys%%'"
                )
            )
        )
        migrations.downgrade(database_url, schema, BEFORE_0013)
        assert (await http.get("/api/v1/queues")).status_code == 200  # read, and remembered
        db.all("UPDATE {schema}.api_keys SET revoked_at = now() WHERE name = 'test-viewer'")
        assert (await http.get("/api/v1/queues")).status_code == 401


@pytest.mark.timeout(120)
async def test_a_request_that_waited_for_a_demotion_to_commit_gets_the_new_role(
    api_url: str, keys: Keys, db: DB
) -> None:
    """A request reads its key (operator), then waits for the key's row (its once-a-minute
    last_used_at write) while a transaction demotes the key to viewer. When the demotion
    commits, the request must not go on as an operator: it enqueued a job after the key had
    been demoted, by a check that had waited for the demotion itself."""
    db.all("UPDATE {schema}.api_keys SET last_used_at = NULL WHERE name = 'test-operator'")
    with db.connect() as other:
        other.execute(db.compose("UPDATE {schema}.api_keys SET role = 'viewer' WHERE name = 'test-operator'"))
        async with httpx.AsyncClient(base_url=api_url, headers=bearer(keys.operator), timeout=30) as http:
            sent = asyncio.ensure_future(http.post("/api/v1/jobs", json={"task": "api_echo", "args": {}}))
            await wait_until(lambda: bool(db.one("SELECT count(*) FROM pg_locks WHERE NOT granted")))
            other.commit()
            response = await sent
    assert response.status_code == 403, response.text
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0


@pytest.mark.timeout(120)
async def test_a_request_that_waited_for_a_revoke_to_commit_is_refused(
    api_url: str, keys: Keys, db: DB
) -> None:
    """As above, with a revoke in a longer transaction: the request waited for it, and must
    then be refused, not served (and its key must not be remembered as valid)."""
    db.all("UPDATE {schema}.api_keys SET last_used_at = NULL WHERE name = 'test-operator'")
    with db.connect() as other:
        other.execute(
            db.compose("UPDATE {schema}.api_keys SET revoked_at = now() WHERE name = 'test-operator'")
        )
        async with httpx.AsyncClient(base_url=api_url, headers=bearer(keys.operator), timeout=30) as http:
            sent = asyncio.ensure_future(http.post("/api/v1/jobs", json={"task": "api_echo", "args": {}}))
            await wait_until(lambda: bool(db.one("SELECT count(*) FROM pg_locks WHERE NOT granted")))
            other.commit()
            response = await sent
            assert response.status_code == 401, response.text
            assert (await http.get("/api/v1/queues")).status_code == 401
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0
