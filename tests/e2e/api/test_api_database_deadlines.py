"""A JSON API request on a database link that stopped answering.

/health and /metrics answer 503 within their deadline when the database stops answering
(tests/e2e/test_health_metrics.py). The JSON API's requests should too: a request whose
pooled connection's link went silent must fail (503 ``database-unavailable``, with
Retry-After) within a bounded time, not hang until the kernel gives up on the TCP
connection (many minutes), holding one of the pool's connections all along.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from starlette.types import ASGIApp

from conveyor.api import create_app

from ...helpers import FreezingProxy
from .. import api_tasks
from .support import Keys, Server, bearer, problem

# Generous: the database's own checks (/health) answer within 1 s, connects give up in 5 s
# and statements in 10 s; a request that is still waiting after this is hung.
ANSWER_WITHIN = 20.0


async def test_a_request_on_a_silent_database_link_answers_503_in_time(
    database_url: str, schema: str, keys: Keys, serve: Callable[[ASGIApp], Server]
) -> None:
    assert api_tasks.QUEUE
    proxy = FreezingProxy(database_url)
    try:
        url = serve(create_app(database_url=proxy.url(), schema=schema)).url
        async with httpx.AsyncClient(
            base_url=url, headers=bearer(keys.viewer), timeout=ANSWER_WITHIN + 10
        ) as http:
            warm = await http.get("/api/v1/queues")  # the pool holds an open connection now
            assert warm.status_code == 200, warm.text

            proxy.freeze()  # the link still takes bytes, and nothing comes back
            started = time.monotonic()
            try:
                frozen: httpx.Response | None = await http.get("/api/v1/queues")
            except httpx.ReadTimeout:
                frozen = None
            took = time.monotonic() - started
            # New connections get through again; the frozen ones stay frozen for good. A
            # request answers from a new connection: the frozen one was not given back.
            proxy.heal()
            healed = await http.get("/api/v1/queues")
            proxy.thaw()  # let the server's handler finish, so that the server can stop
    finally:
        proxy.thaw()
        proxy.close()

    assert frozen is not None, f"GET /api/v1/queues was still waiting after {took:.0f} s"
    assert took < ANSWER_WITHIN, took
    body = problem(frozen, 503, "database-unavailable")
    assert frozen.headers.get("retry-after"), frozen.headers
    assert body["detail"]
    assert healed.status_code == 200, healed.text
