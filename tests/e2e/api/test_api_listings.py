"""Listings through the HTTP API, with worker processes: job search by every filter and
cursor, the history, cleaning it, dead letters by death time, and the workers with the jobs
they run; bad filters and cursors refused with 422 problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ...helpers import DB, wait_until
from .support import Keys, Workers, bearer, problem

pytestmark = pytest.mark.processes


async def enqueue(http: httpx.AsyncClient, **job: Any) -> int:
    response = await http.post("/api/v1/jobs", json=job)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def ids(http: httpx.AsyncClient, path: str, **params: Any) -> list[int]:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return [row["id"] for row in body["jobs" if "jobs" in body else "dead_jobs"]]


async def every_page(http: httpx.AsyncClient, path: str, **params: Any) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = (await http.get(path, params=query)).json()
        seen += [row["id"] for row in body["jobs" if "jobs" in body else "dead_jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_search_by_every_filter(http: httpx.AsyncClient, workers: Workers) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    keyed = await enqueue(http, task="api_echo", key="tenant-7", delay=3600)
    unique = await enqueue(http, task="api_echo", unique_key="order-9", delay=3600)
    workers.start()
    done = await enqueue(http, task="api_add", args={"a": 1, "b": 1})
    assert (await http.get(f"/api/v1/jobs/{done}/result", params={"timeout": 20})).status_code == 200

    assert await ids(http, "/api/v1/jobs", key="tenant-7") == [keyed]
    assert await ids(http, "/api/v1/jobs", unique_key="order-9") == [unique]
    assert await ids(http, "/api/v1/jobs", id=str(done)) == [done]
    assert await ids(http, "/api/v1/jobs", state="completed") == [done]
    assert await ids(http, "/api/v1/jobs", state="scheduled,completed") == [done, unique, keyed]
    assert await ids(http, "/api/v1/jobs", task="api_add", queue="api") == [done]
    assert await ids(http, "/api/v1/jobs", enqueued_after=before.isoformat()) == [done, unique, keyed]
    assert await ids(http, "/api/v1/jobs", enqueued_before=before.isoformat()) == []
    assert await ids(http, "/api/v1/jobs", finished_after=before.isoformat()) == [done]
    assert await every_page(http, "/api/v1/jobs", limit=1) == [done, unique, keyed]
    row = (await http.get("/api/v1/jobs", params={"key": "tenant-7"})).json()["jobs"][0]
    assert (row["key"], row["state"], row["worker_id"]) == ("tenant-7", "scheduled", None)

    for params in (
        {"state": "done"},
        {"state": "completed,"},
        {"id": "4x"},
        {"enqueued_after": "2030-01-01T00:00:00"},
        {"enqueued_after": "yesterday"},
        {"key": ""},
        {"cursor": "garbage"},
    ):
        body = problem(await http.get("/api/v1/jobs", params=params), 422, "validation")
        assert body["errors"][0]["field"] == next(iter(params)), body
    problem(await http.get("/api/v1/jobs", params={"queue": "nowhere"}), 422, "unknown-queue")
    # A cursor of another listing is not one for this one.
    history = (await http.get("/api/v1/history", params={"limit": 1, "state": "completed,cancelled"})).json()
    assert [row["id"] for row in history["jobs"]] == [done]


async def test_history_paged_and_cleaned(
    http: httpx.AsyncClient, workers: Workers, keys: Keys, db: DB
) -> None:
    workers.start()
    response = await http.post(
        "/api/v1/jobs/bulk", json={"jobs": [{"task": "api_add", "args": {"a": i, "b": 0}} for i in range(5)]}
    )
    done = response.json()["ids"]
    failed = await enqueue(http, task="api_fail")
    for job_id in done:
        assert (await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20})).status_code == 200
    assert (await http.get(f"/api/v1/jobs/{failed}/result", params={"timeout": 20})).status_code == 409
    assert sorted(await every_page(http, "/api/v1/history", limit=2)) == sorted([*done, failed])
    assert await ids(http, "/api/v1/history", state="dead") == [failed]
    page = (await http.get("/api/v1/history", params={"limit": 2})).json()
    other = (await http.get("/api/v1/jobs", params={"limit": 2})).json()["next_cursor"]
    body = problem(await http.get("/api/v1/history", params={"cursor": other}), 422, "validation")
    assert body["errors"][0]["field"] == "cursor"
    assert page["next_cursor"] is not None
    problem(await http.get("/api/v1/history", params={"state": "running"}), 422, "validation")

    refused = await http.post("/api/v1/history/clean", json={"older_than": 0}, headers=bearer(keys.operator))
    problem(refused, 403, "forbidden")
    problem(await http.post("/api/v1/history/clean", json={}), 422, "validation")
    problem(await http.post("/api/v1/history/clean", json={"older_than": 0, "state": "running"}), 422)
    problem(
        await http.post("/api/v1/history/clean", json={"older_than": 0, "queue": "nowhere"}),
        422,
        "unknown-queue",
    )
    assert db.one("SELECT count(*) FROM {schema}.job_history") == 5
    kept = await http.post("/api/v1/history/clean", json={"older_than": "1h"})
    assert kept.json() == {"moved": 0}
    # A job is moved once the metrics' counting mark has passed its finish (a second or so).
    moved = 0

    async def cleaned() -> bool:
        nonlocal moved
        response = await http.post("/api/v1/history/clean", json={"older_than": 0, "state": "completed"})
        moved += response.json()["moved"]
        return moved == 5

    await wait_until(cleaned, within=20, interval=0.2)
    assert db.one("SELECT count(*) FROM {schema}.job_history") == 0
    assert await ids(http, "/api/v1/history") == [failed]  # the dead one stays: state was completed


async def test_dead_letters_by_death_time_and_cursor(
    http: httpx.AsyncClient, workers: Workers, db: DB
) -> None:
    workers.start()
    ids_ = (await http.post("/api/v1/jobs/bulk", json={"jobs": [{"task": "api_fail"}] * 3})).json()["ids"]
    for job_id in ids_:
        assert (await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20})).status_code == 409
    workers.stop_all()
    assert sorted(await every_page(http, "/api/v1/dead-jobs", limit=2)) == sorted(ids_)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await ids(http, "/api/v1/dead-jobs", died_after=future) == []
    assert len(await ids(http, "/api/v1/dead-jobs", died_before=future)) == 3
    body = problem(await http.get("/api/v1/dead-jobs", params={"cursor": "x"}), 422, "validation")
    assert body["errors"][0]["field"] == "cursor"

    retried = await http.post("/api/v1/dead-jobs/retry", json={"queue": "api", "limit": 1})
    assert retried.status_code == 200, retried.text
    assert len(retried.json()["retried"]) == 1
    problem(
        await http.post("/api/v1/dead-jobs/retry", json={"ids": [ids_[0]], "limit": 1}), 422, "invalid-option"
    )
    assert (await http.post("/api/v1/dead-jobs/purge", json={"died_after": future})).json() == {"purged": 0}
    assert (await http.post("/api/v1/dead-jobs/purge", json={"died_before": future})).json() == {"purged": 2}
    assert db.one("SELECT count(*) FROM {schema}.dead_jobs") == 0


async def test_workers_and_the_jobs_they_run(http: httpx.AsyncClient, workers: Workers, db: DB) -> None:
    assert (await http.get("/api/v1/workers")).json()["workers"] == []
    process = workers.start("--concurrency", "3")
    job_id = await enqueue(http, task="api_sleep", args={"seconds": 600})
    await wait_until(
        lambda: db.one("SELECT state::text FROM {schema}.jobs WHERE id = %s", [job_id]) == "running"
    )
    found = (await http.get("/api/v1/workers")).json()
    [worker] = found["workers"]
    assert (worker["pid"], worker["concurrency"], worker["alive"]) == (process.pid, 3, True)
    assert "api" in worker["queues"]
    assert [job["id"] for job in worker["jobs"]] == [job_id]
    assert worker["jobs"][0]["aborting"] is False
    assert worker["heartbeat_age"] >= 0
    assert found["scheduler"]["running"] is False
    assert (await http.get("/api/v1/workers", params={"lease": "1h"})).json()["workers"][0]["alive"] is True
    problem(await http.get("/api/v1/workers", params={"lease": 0}), 422, "validation")
    problem(await http.get("/api/v1/workers", params={"lease": "forever"}), 422, "validation")
