"""Queues, tasks and pauses through the HTTP API: counts, pause and resume (a paused queue
really holds its jobs back from a worker process), limits, and bad input refused."""

from __future__ import annotations

import httpx
import pytest

from ...helpers import DB, wait_until
from .support import Keys, Workers, bearer, problem

pytestmark = pytest.mark.processes


async def queue(http: httpx.AsyncClient, name: str) -> dict[str, object]:
    response = await http.get(f"/api/v1/queues/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_queues_list_with_counts_and_limits(http: httpx.AsyncClient) -> None:
    for i in range(3):
        assert (
            await http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": i, "b": 1}})
        ).status_code == 201
    assert (await http.post("/api/v1/jobs", json={"task": "api_echo", "delay": 600})).status_code == 201
    listed = (await http.get("/api/v1/queues")).json()["queues"]
    api = next(q for q in listed if q["queue"] == "api")
    assert (api["waiting"], api["scheduled"], api["running"], api["dead"]) == (3, 1, 0, 0)
    assert api["paused"] is False
    assert api["limits"] is None
    assert isinstance(api["oldest_waiting_age"], float)
    assert await queue(http, "api") == api
    problem(await http.get("/api/v1/queues/nowhere"), 404, "not-found")
    problem(await http.get("/api/v1/queues/bad name"), 422, "validation")


async def test_a_paused_queue_holds_its_jobs_until_resumed(
    http: httpx.AsyncClient, workers: Workers, db: DB, keys: Keys
) -> None:
    assert (await http.post("/api/v1/jobs", json={"task": "api_echo"})).status_code == 201  # makes the queue
    paused = await http.post("/api/v1/queues/api/pause", headers=bearer(keys.operator))
    assert paused.status_code == 200
    assert paused.json()["paused"] is True
    workers.start()
    response = await http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": 1, "b": 1}})
    job_id = response.json()["id"]
    held = await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 1})
    assert held.status_code == 202  # a worker is up, the queue is paused
    resumed = await http.post("/api/v1/queues/api/resume", headers=bearer(keys.operator))
    assert resumed.json()["paused"] is False
    done = await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20})
    assert done.json()["result"] == 2
    problem(await http.post("/api/v1/queues/nowhere/pause"), 404, "not-found")
    problem(await http.post("/api/v1/queues/nowhere/resume"), 404, "not-found")
    problem(await http.post("/api/v1/queues/api/pause", headers=bearer(keys.viewer)), 403, "forbidden")
    assert (await queue(http, "api"))["paused"] is False
    assert db.one("SELECT count(*) FROM {schema}.queues WHERE name = 'nowhere'") == 0


async def test_limits_are_set_read_and_cleared(http: httpx.AsyncClient, keys: Keys, db: DB) -> None:
    assert (await http.post("/api/v1/jobs", json={"task": "api_echo"})).status_code == 201
    assert (await http.get("/api/v1/queues/api/limits")).json() == {"queue": "api", "limits": None}
    body = {
        "rate": {"limit": 20, "period": "1m"},
        "concurrency": 3,
        "key_rate": {"limit": 5, "period": 1},
        "key_concurrency": 1,
    }
    response = await http.put("/api/v1/queues/api/limits", json=body)
    assert response.status_code == 200, response.text
    limits = response.json()["limits"]
    assert limits["rate"] == {"limit": 20, "period": 60.0}
    assert limits["key_rate"] == {"limit": 5, "period": 1.0}
    assert (limits["concurrency"], limits["key_concurrency"], limits["running"]) == (3, 1, 0)
    assert (await http.get("/api/v1/queues/api/limits")).json()["limits"] == limits
    assert (await queue(http, "api"))["limits"] == limits
    assert db.one("SELECT concurrency FROM {schema}.queues WHERE name = 'api'") == 3

    for bad in (
        {"rate": {"limit": 0, "period": "1m"}},
        {"rate": {"limit": 5}},
        {"rate": {"limit": 5, "period": "forever"}},
        {"rate": {"limit": 5, "period": 0}},
        {"rate": "20/1m"},
        {"concurrency": 0},
        {"concurrency": "3"},
        {"speed": 1},
    ):
        problem(await http.put("/api/v1/queues/api/limits", json=bad), 422)
    problem(
        await http.put("/api/v1/queues/api/limits", json={"concurrency": 1}, headers=bearer(keys.operator)),
        403,
    )
    problem(await http.put("/api/v1/queues/nowhere/limits", json={"concurrency": 1}), 404, "not-found")
    problem(await http.get("/api/v1/queues/nowhere/limits"), 404, "not-found")
    assert db.one("SELECT concurrency FROM {schema}.queues WHERE name = 'api'") == 3
    assert db.one("SELECT count(*) FROM {schema}.queues WHERE name = 'nowhere'") == 0

    cleared = await http.put("/api/v1/queues/api/limits", json={})
    assert cleared.json() == {"queue": "api", "limits": None}


async def test_tasks_and_everything_pause_and_resume(
    http: httpx.AsyncClient, workers: Workers, keys: Keys
) -> None:
    workers.start()
    tasks = (await http.get("/api/v1/tasks")).json()["tasks"]
    assert {"api_add", "api_echo"} <= {t["name"] for t in tasks}
    operator = bearer(keys.operator)
    assert (await http.post("/api/v1/tasks/api_add/pause", headers=operator)).json() == {
        "task": "api_add",
        "paused": True,
    }
    pauses = (await http.get("/api/v1/pauses")).json()
    assert list(pauses["tasks"]) == ["api_add"]
    assert pauses["all_paused"] is False
    add = (await http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": 1, "b": 2}})).json()["id"]
    echo = (await http.post("/api/v1/jobs", json={"task": "api_echo", "args": {"value": 1}})).json()["id"]
    assert (await http.get(f"/api/v1/jobs/{echo}/result", params={"timeout": 20})).status_code == 200
    assert (await http.get(f"/api/v1/jobs/{add}/result", params={"timeout": 0.5})).status_code == 202
    assert (await http.post("/api/v1/tasks/api_add/resume", headers=operator)).json()["paused"] is False
    assert (await http.get(f"/api/v1/jobs/{add}/result", params={"timeout": 20})).json()["result"] == 3

    everything = await http.post("/api/v1/pause", headers=operator)
    assert everything.json()["all_paused"] is True
    held = (await http.post("/api/v1/jobs", json={"task": "api_echo", "args": {"value": 2}})).json()["id"]
    assert (await http.get(f"/api/v1/jobs/{held}/result", params={"timeout": 0.5})).status_code == 202
    assert (await http.get("/api/v1/queues/api")).json()["all_paused"] is True
    assert (await http.post("/api/v1/resume", headers=operator)).json()["all_paused"] is False
    assert (await http.get(f"/api/v1/jobs/{held}/result", params={"timeout": 20})).json()["result"] == 2

    problem(await http.post("/api/v1/pause", headers=bearer(keys.viewer)), 403, "forbidden")
    problem(await http.post("/api/v1/tasks/api_add/pause", headers=bearer(keys.viewer)), 403, "forbidden")
    assert (await http.get("/api/v1/pauses")).json() == {
        "all_paused": False,
        "all_paused_at": None,
        "tasks": {},
    }
    problem(await http.post(f"/api/v1/tasks/{'x' * 201}/pause"), 422, "validation")


async def test_jobs_run_while_the_api_lists_them(http: httpx.AsyncClient, workers: Workers) -> None:
    """The counts follow the work a worker process does."""
    workers.start()
    response = await http.post(
        "/api/v1/jobs/bulk", json={"jobs": [{"task": "api_add", "args": {"a": i, "b": i}} for i in range(20)]}
    )
    ids = response.json()["ids"]

    async def finished() -> bool:
        api = await queue(http, "api")
        return api["waiting"] == 0 and api["running"] == 0

    await wait_until(finished, within=30)
    for job_id in ids[:3]:
        assert (await http.get(f"/api/v1/jobs/{job_id}")).json()["state"] == "completed"
    assert (await queue(http, "api"))["completed_24h"] == 20
