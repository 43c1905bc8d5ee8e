"""Jobs through the HTTP API, with real `conveyor worker` processes: enqueue one and many,
list with filters and cursors, detail, result long-poll, cancel, abort, run now, retry,
delete; and every bad input refused with a 4xx problem that changes nothing."""

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


async def state_of(http: httpx.AsyncClient, job_id: int) -> str:
    response = await http.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


async def test_enqueue_run_and_await_the_result(http: httpx.AsyncClient, workers: Workers) -> None:
    job_id = await enqueue(http, task="api_add", args={"a": 2, "b": 3})
    early = await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 0})
    assert early.status_code == 202
    assert early.json() == {"id": job_id, "state": "available"}
    workers.start()
    response = await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": job_id, "state": "completed", "result": 5}
    detail = (await http.get(f"/api/v1/jobs/{job_id}")).json()
    assert detail["state"] == "completed"
    assert detail["result"] == 5
    assert detail["args"] == {"a": 2, "b": 3}
    assert next(event["event"] for event in detail["timeline"]) == "enqueued"
    assert detail["timeline"][-1]["event"] == "completed"


async def test_enqueue_with_every_option(http: httpx.AsyncClient, db: DB) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=2)
    job_id = await enqueue(
        http,
        task="api_echo",
        args={"value": [1, "two", {"three": 3.5}], "meta": None},
        queue="api",
        priority="high",
        run_at=run_at.isoformat(),
        unique_key="order-42",
        max_attempts=7,
        key="tenant-1",
        meta={"source": "test"},
    )
    detail = (await http.get(f"/api/v1/jobs/{job_id}")).json()
    assert detail["state"] == "scheduled"
    assert (detail["priority"], detail["max_attempts"], detail["unique_key"], detail["key"]) == (
        1,
        7,
        "order-42",
        "tenant-1",
    )
    assert detail["meta"] == {"source": "test"}
    assert datetime.fromisoformat(detail["run_at"]) == run_at
    # The same unique key: the live job's id, and no second job.
    assert await enqueue(http, task="api_echo", unique_key="order-42") == job_id
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 1

    delayed = await enqueue(http, task="api_echo", delay="90s", priority=3)
    row = db.one("SELECT run_at - enqueued_at, priority FROM {schema}.jobs WHERE id = %s", [delayed])
    assert row == (timedelta(seconds=90), 3)
    seconds = await enqueue(http, task="api_echo", delay=1.5)
    gap = db.one("SELECT run_at - enqueued_at FROM {schema}.jobs WHERE id = %s", [seconds])
    assert gap == timedelta(seconds=1.5)


async def test_a_task_only_the_workers_know_is_enqueued_by_name(
    http: httpx.AsyncClient, workers: Workers
) -> None:
    problem(await http.post("/api/v1/jobs", json={"task": "api_worker_only"}), 422, "unknown-task")
    workers.start(tasks="tests.e2e.api_tasks,tests.e2e.api_worker_only_tasks")
    job_id = await enqueue(http, task="api_worker_only", args={"word": "hi"})
    response = await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20})
    assert response.json()["result"] == "HI"


async def test_bulk_enqueue_is_all_or_nothing(http: httpx.AsyncClient, db: DB) -> None:
    response = await http.post(
        "/api/v1/jobs/bulk",
        json={"jobs": [{"task": "api_add", "args": {"a": i, "b": 1}} for i in range(5)]},
    )
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert len(ids) == 5
    assert ids == sorted(ids)
    before = db.one("SELECT count(*) FROM {schema}.jobs")
    refused = await http.post(
        "/api/v1/jobs/bulk",
        json={
            "jobs": [{"task": "api_add", "args": {"a": 1, "b": 1}}, {"task": "api_add", "args": {"a": "x"}}]
        },
    )
    problem(refused, 422, "invalid-arguments")
    problem(await http.post("/api/v1/jobs/bulk", json={"jobs": []}), 422, "validation")
    problem(
        await http.post("/api/v1/jobs/bulk", json={"jobs": [{"task": "api_add"}] * 1001}), 422, "validation"
    )
    problem(await http.post("/api/v1/jobs/bulk", json={"jobs": [{"task": "nope"}]}), 422, "unknown-task")
    assert db.one("SELECT count(*) FROM {schema}.jobs") == before


@pytest.mark.parametrize(
    ("job", "slug", "words"),
    [
        ({"task": "no_such_task"}, "unknown-task", "no_such_task"),
        ({"task": "api_add", "args": {"a": 1}}, "invalid-arguments", "missing"),
        ({"task": "api_add", "args": {"a": 1, "b": 2, "c": 3}}, "invalid-arguments", "unexpected"),
        ({"task": "api_add", "args": {"a": "1", "b": 2}}, "invalid-arguments", "'a'"),
        (
            {"task": "api_add", "args": {"a": 1, "b": 2}, "queue": "no-such-queue"},
            "unknown-queue",
            "no-such-queue",
        ),
        ({"task": "api_echo", "queue": "bad name!"}, "validation", "queue"),
        ({"task": "api_echo", "priority": 7}, "validation", "priority"),
        ({"task": "api_echo", "priority": "urgent"}, "validation", "priority"),
        ({"task": "api_echo", "delay": -1}, "validation", "delay"),
        ({"task": "api_echo", "delay": "soon"}, "validation", "delay"),
        ({"task": "api_echo", "run_at": "2030-01-01T00:00:00"}, "validation", "run_at"),
        ({"task": "api_echo", "run_at": "2030-01-01T00:00:00Z", "delay": 5}, "invalid-option", "not both"),
        ({"task": "api_echo", "max_attempts": 0}, "validation", "max_attempts"),
        ({"task": "api_echo", "max_attempts": 2**31}, "validation", "max_attempts"),
        ({"task": "api_echo", "unique_key": ""}, "validation", "unique_key"),
        ({"task": "api_echo", "unique_key": "a\u0000b"}, "validation", "/unique_key"),
        ({"task": "api_echo", "args": {"value": ["a\u0000b"]}}, "validation", "/args/value/0"),
        ({"task": "api_echo", "meta": {"a\u0000": 1}}, "validation", "/meta/a\u0000"),
        ({"task": "api_echo", "args": {"value": "x" * (1024 * 1024)}}, "invalid-arguments", "limit"),
        ({"task": "api_echo", "args": []}, "validation", "args"),
        ({"task": "api_echo", "meta": "tag"}, "validation", "meta"),
    ],
)
async def test_bad_jobs_are_refused_and_change_nothing(
    http: httpx.AsyncClient, db: DB, job: dict[str, Any], slug: str, words: str
) -> None:
    body = problem(await http.post("/api/v1/jobs", json=job), 422, slug)
    assert words in body["detail"] or any(words in e["field"] for e in body.get("errors", [])), body
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0


async def test_list_filters_and_pages_by_cursor(http: httpx.AsyncClient, db: DB) -> None:
    ids = [await enqueue(http, task="api_add", args={"a": i, "b": 0}) for i in range(5)]
    echo = await enqueue(http, task="api_echo", delay=3600)
    page = (await http.get("/api/v1/jobs", params={"limit": 2})).json()
    assert [j["id"] for j in page["jobs"]] == [echo, ids[4]]
    seen = [j["id"] for j in page["jobs"]]
    while page["next_cursor"] is not None:
        page = (await http.get("/api/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]})).json()
        seen += [j["id"] for j in page["jobs"]]
    assert seen == [echo, *reversed(ids)]
    by_task = (await http.get("/api/v1/jobs", params={"task": "api_echo"})).json()
    assert [j["id"] for j in by_task["jobs"]] == [echo]
    by_state = (await http.get("/api/v1/jobs", params={"state": "scheduled", "queue": "api"})).json()
    assert [j["id"] for j in by_state["jobs"]] == [echo]
    assert by_state["next_cursor"] is None
    assert (await http.get("/api/v1/jobs", params={"state": "dead"})).json()["jobs"] == []

    problem(await http.get("/api/v1/jobs", params={"queue": "nowhere"}), 422, "unknown-queue")
    body = problem(await http.get("/api/v1/jobs", params={"state": "sleeping"}), 422, "validation")
    assert body["errors"][0]["field"] == "state"
    for cursor in ("garbage", "ajA", "", "x" * 65, "ajEyMzQ1Njc4OTAxMjM0NTY3ODkw"):
        body = problem(await http.get("/api/v1/jobs", params={"cursor": cursor}), 422, "validation")
        assert body["errors"][0]["field"] == "cursor"
    problem(await http.get("/api/v1/jobs", params={"limit": 0}), 422, "validation")
    problem(await http.get("/api/v1/jobs", params={"limit": 1001}), 422, "validation")


async def test_control_of_one_job(http: httpx.AsyncClient, db: DB, keys: Keys) -> None:
    later = await enqueue(http, task="api_echo", delay=3600)
    assert (await http.post(f"/api/v1/jobs/{later}/run-now")).json() == {"id": later, "state": "available"}
    assert await state_of(http, later) == "available"

    cancelled = await enqueue(http, task="api_echo", delay=3600)
    response = await http.post(f"/api/v1/jobs/{cancelled}/cancel", json={"reason": "not needed"})
    assert response.json() == {"id": cancelled, "state": "cancelled"}
    detail = (await http.get(f"/api/v1/jobs/{cancelled}")).json()
    assert detail["state"] == "cancelled"
    assert "not needed" in str(detail["errors"])
    assert "test-admin" in str(detail["errors"])  # who asked
    problem(await http.post(f"/api/v1/jobs/{cancelled}/cancel"), 409, "job-state")
    problem(await http.post(f"/api/v1/jobs/{cancelled}/run-now"), 409, "job-state")
    body = problem(
        await http.get(f"/api/v1/jobs/{cancelled}/result", params={"timeout": 0}), 409, "job-cancelled"
    )
    assert body["job_id"] == cancelled

    deleted = await enqueue(http, task="api_echo", delay=3600)
    assert (await http.delete(f"/api/v1/jobs/{deleted}")).json() == {"id": deleted, "state": "deleted"}
    problem(await http.get(f"/api/v1/jobs/{deleted}"), 404, "not-found")

    # Without a body, with an empty one, with a bad one.
    aborted = await enqueue(http, task="api_echo", delay=3600)
    response = await http.post(
        f"/api/v1/jobs/{aborted}/abort", content=b"", headers={"Content-Type": "application/json"}
    )
    assert response.json() == {"id": aborted, "state": "cancelled"}
    other = await enqueue(http, task="api_echo", delay=3600)
    problem(await http.post(f"/api/v1/jobs/{other}/cancel", json={"reason": 5}), 422, "validation")
    problem(await http.post(f"/api/v1/jobs/{other}/cancel", json={"why": "x"}), 422, "validation")
    assert await state_of(http, other) == "scheduled"

    # An operator may not delete.
    body = problem(
        await http.delete(f"/api/v1/jobs/{other}", headers=bearer(keys.operator)), 403, "forbidden"
    )
    assert "admin" in body["detail"]
    assert await state_of(http, other) == "scheduled"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/cancel"),
        ("POST", "/abort"),
        ("POST", "/run-now"),
        ("POST", "/retry"),
        ("GET", "/result?timeout=0"),
    ],
)
async def test_an_unknown_job_is_a_404(http: httpx.AsyncClient, method: str, suffix: str) -> None:
    problem(await http.request(method, f"/api/v1/jobs/987654321{suffix}"), 404, "not-found")


async def test_a_dead_job_fails_its_result_and_is_retried(
    http: httpx.AsyncClient, workers: Workers, db: DB
) -> None:
    workers.start()
    job_id = await enqueue(http, task="api_fail", args={"message": "boom"})
    body = problem(await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20}), 409, "job-failed")
    assert body["job_id"] == job_id
    assert body["error"]["error"].endswith("boom")
    dead = (await http.get("/api/v1/dead-jobs", params={"queue": "api"})).json()["dead_jobs"]
    assert [d["id"] for d in dead] == [job_id]
    assert (await http.post(f"/api/v1/jobs/{job_id}/retry")).json() == {"id": job_id, "state": "available"}
    await wait_until(
        lambda: db.one("SELECT count(*) FROM {schema}.dead_jobs WHERE id = %s", [job_id]) == 1, within=20
    )
    problem(await http.post(f"/api/v1/jobs/{job_id}/cancel"), 409, "job-state")


async def test_abort_a_running_job(http: httpx.AsyncClient, workers: Workers, db: DB) -> None:
    workers.start()
    job_id = await enqueue(http, task="api_sleep", args={"seconds": 600})
    await wait_until(
        lambda: db.one("SELECT state::text FROM {schema}.jobs WHERE id = %s", [job_id]) == "running",
        within=20,
    )
    response = await http.post(f"/api/v1/jobs/{job_id}/abort", json={"reason": "enough"})
    assert response.json() == {"id": job_id, "state": "aborting"}
    body = problem(
        await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20}), 409, "job-cancelled"
    )
    assert body["job_id"] == job_id
    assert await state_of(http, job_id) == "cancelled"
    problem(await http.delete(f"/api/v1/jobs/{job_id}"), 409, "job-state")


async def test_a_result_wait_is_bounded(http: httpx.AsyncClient) -> None:
    job_id = await enqueue(http, task="api_echo", delay=3600)
    problem(await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 31}), 422, "validation")
    problem(await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": -1}), 422, "validation")
    problem(await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": "nan"}), 422, "validation")
    started = datetime.now(UTC)
    response = await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 0.2})
    assert response.status_code == 202
    assert response.json()["state"] == "scheduled"
    assert datetime.now(UTC) - started < timedelta(seconds=10)
