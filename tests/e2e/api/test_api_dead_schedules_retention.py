"""Dead letters, schedules, retention and the scheduler's status through the HTTP API, with
worker processes where jobs must run; bad input refused with nothing changed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from ...helpers import DB
from .support import Keys, Workers, bearer, problem

pytestmark = pytest.mark.processes


async def kill_jobs(http: httpx.AsyncClient, workers: Workers, count: int, **job: Any) -> list[int]:
    """``count`` jobs of api_fail, run to death by a worker process."""
    workers.start()
    job = {"task": "api_fail", **job}
    ids = (await http.post("/api/v1/jobs/bulk", json={"jobs": [job] * count})).json()["ids"]
    for job_id in ids:
        assert (await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20})).status_code == 409
    return list(ids)


async def test_dead_letters_listed_shown_retried_and_purged(
    http: httpx.AsyncClient, workers: Workers, db: DB, keys: Keys
) -> None:
    ids = await kill_jobs(http, workers, 4, args={"message": "no way"})
    listed = (await http.get("/api/v1/dead-jobs")).json()["dead_jobs"]
    assert sorted(d["id"] for d in listed) == sorted(ids)
    assert all(d["last_error"].endswith("no way") for d in listed)
    assert len((await http.get("/api/v1/dead-jobs", params={"limit": 2})).json()["dead_jobs"]) == 2
    assert (await http.get("/api/v1/dead-jobs", params={"task": "api_add"})).json()["dead_jobs"] == []
    problem(await http.get("/api/v1/dead-jobs", params={"queue": "nowhere"}), 422, "unknown-queue")

    shown = (await http.get(f"/api/v1/dead-jobs/{ids[0]}")).json()
    assert shown["args"] == {"message": "no way"}
    assert shown["errors"][-1]["error"].endswith("no way")
    problem(await http.get("/api/v1/dead-jobs/987654"), 404, "not-found")

    workers.stop_all()  # what goes back stays back
    one = await http.post(f"/api/v1/dead-jobs/{ids[0]}/retry", headers=bearer(keys.operator))
    assert one.json() == {"id": ids[0], "state": "available"}
    problem(await http.post(f"/api/v1/dead-jobs/{ids[0]}/retry"), 404, "not-found")
    many = await http.post(
        "/api/v1/dead-jobs/retry", json={"ids": [ids[1], ids[0], 987654]}, headers=bearer(keys.operator)
    )
    assert many.json()["retried"] == [ids[1]]
    assert set(many.json()["refused"]) == {str(ids[0]), "987654"}
    problem(
        await http.post("/api/v1/dead-jobs/retry", json={"ids": [1], "queue": "api"}), 422, "invalid-option"
    )
    problem(await http.post("/api/v1/dead-jobs/retry", json={"ids": []}), 422, "validation")
    problem(await http.post("/api/v1/dead-jobs/retry", json={"ids": ["1"]}), 422, "validation")
    problem(await http.post("/api/v1/dead-jobs/retry", json={"queue": "nowhere"}), 422, "unknown-queue")
    assert db.one("SELECT count(*) FROM {schema}.dead_jobs") == 2

    # Purging is for admins, needs a filter (or everything), and deletes what matches.
    problem(
        await http.post("/api/v1/dead-jobs/purge", json={"everything": True}, headers=bearer(keys.operator)),
        403,
    )
    problem(await http.post("/api/v1/dead-jobs/purge", json={}), 422, "invalid-option")
    problem(await http.post("/api/v1/dead-jobs/purge", content=b""), 422, "validation")
    problem(
        await http.post("/api/v1/dead-jobs/purge", json={"everything": True, "queue": "api"}),
        422,
        "invalid-option",
    )
    problem(await http.post("/api/v1/dead-jobs/purge", json={"older_than": "eventually"}), 422, "validation")
    assert db.one("SELECT count(*) FROM {schema}.dead_jobs") == 2
    assert (await http.post("/api/v1/dead-jobs/purge", json={"older_than": "1h"})).json() == {"purged": 0}
    assert (await http.post("/api/v1/dead-jobs/purge", json={"ids": [ids[2]]})).json() == {"purged": 1}
    assert (await http.post("/api/v1/dead-jobs/purge", json={"everything": True})).json() == {"purged": 1}
    assert db.one("SELECT count(*) FROM {schema}.dead_jobs") == 0


async def test_retry_every_dead_job_of_a_queue(http: httpx.AsyncClient, workers: Workers, db: DB) -> None:
    ids = await kill_jobs(http, workers, 3)
    workers.stop_all()
    response = await http.post("/api/v1/dead-jobs/retry", json={"queue": "api", "task": "api_fail"})
    assert sorted(response.json()["retried"]) == sorted(ids)
    assert response.json()["refused"] == {}
    assert db.one("SELECT count(*) FROM {schema}.jobs WHERE state = 'available'") == 3


def cron_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "cron": "0 3 * * *",
        "task": "api_add",
        "args": {"a": 1, "b": 2},
        "timezone": "Europe/Paris",
        **changes,
    }


async def test_schedules_made_changed_paused_triggered_and_deleted(
    http: httpx.AsyncClient, keys: Keys, workers: Workers, db: DB
) -> None:
    made = await http.post("/api/v1/schedules", json=cron_body())
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert (schedule["name"], schedule["timezone"], schedule["paused"]) == ("nightly", "Europe/Paris", False)
    local = datetime.fromisoformat(schedule["next_fire_local"])
    utc = datetime.fromisoformat(schedule["next_fire_at"])
    assert local == utc
    assert (local.hour, local.minute) == (3, 0)
    assert local.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert utc.utcoffset() == timedelta(0)
    assert (await http.get("/api/v1/schedules")).json()["schedules"] == [schedule]
    assert (await http.get("/api/v1/schedules/nightly")).json() == schedule

    problem(await http.post("/api/v1/schedules", json=cron_body()), 409, "conflict")
    problem(
        await http.post("/api/v1/schedules", json=cron_body(name="x", cron="61 * * * *")),
        422,
        "invalid-option",
    )
    problem(
        await http.post("/api/v1/schedules", json=cron_body(name="x", timezone="Mars/Olympus")),
        422,
        "invalid-option",
    )
    problem(
        await http.post("/api/v1/schedules", json=cron_body(name="x", task="no_such")), 422, "unknown-task"
    )
    problem(
        await http.post("/api/v1/schedules", json=cron_body(name="x", args={"a": 1})),
        422,
        "invalid-arguments",
    )
    problem(await http.post("/api/v1/schedules", json=cron_body(name="x", queue="nowhere")), 422)
    problem(await http.post("/api/v1/schedules", json=cron_body(name="bad name")), 422, "validation")
    problem(await http.post("/api/v1/schedules", json=cron_body(name="x", catch_up="all")), 422, "validation")
    problem(
        await http.post("/api/v1/schedules", json=cron_body(name="x"), headers=bearer(keys.operator)), 403
    )
    assert db.one("SELECT count(*) FROM {schema}.schedules") == 1

    changed = await http.patch(
        "/api/v1/schedules/nightly", json={"cron": "30 4 * * *", "args": {"a": 5, "b": 5}}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["cron"], changed.json()["args"], changed.json()["timezone"]) == (
        "30 4 * * *",
        {"a": 5, "b": 5},
        "Europe/Paris",
    )
    assert datetime.fromisoformat(changed.json()["next_fire_local"]).hour == 4
    problem(await http.patch("/api/v1/schedules/nightly", json={"cron": "nope"}), 422, "invalid-option")
    problem(await http.patch("/api/v1/schedules/nightly", json={"name": "other"}), 422, "validation")
    problem(await http.patch("/api/v1/schedules/nobody", json={"cron": "* * * * *"}), 404, "not-found")
    problem(
        await http.patch(
            "/api/v1/schedules/nightly", json={"cron": "* * * * *"}, headers=bearer(keys.operator)
        ),
        403,
    )
    assert db.one("SELECT cron FROM {schema}.schedules") == "30 4 * * *"

    operator = bearer(keys.operator)
    assert (await http.post("/api/v1/schedules/nightly/pause", headers=operator)).json()["paused"] is True
    assert (await http.post("/api/v1/schedules/nightly/resume", headers=operator)).json()["paused"] is False
    workers.start()
    triggered = await http.post("/api/v1/schedules/nightly/trigger", headers=operator)
    assert triggered.status_code == 201
    job_id = triggered.json()["job_id"]
    assert (await http.get(f"/api/v1/jobs/{job_id}/result", params={"timeout": 20})).json()["result"] == 10
    fires = (await http.get("/api/v1/schedules/nightly/fires")).json()["fires"]
    assert [(f["kind"], f["job_id"]) for f in fires] == [("manual", job_id)]
    problem(await http.get("/api/v1/schedules/nightly/fires", params={"limit": 0}), 422, "validation")
    problem(await http.get("/api/v1/schedules/nobody/fires"), 404, "not-found")

    for action in ("pause", "resume", "trigger"):
        problem(await http.post(f"/api/v1/schedules/nobody/{action}"), 404, "not-found")
    problem(await http.delete("/api/v1/schedules/nightly", headers=operator), 403, "forbidden")
    assert (await http.delete("/api/v1/schedules/nightly")).status_code == 204
    problem(await http.delete("/api/v1/schedules/nightly"), 404, "not-found")
    problem(await http.get("/api/v1/schedules/nightly"), 404, "not-found")


async def test_retention_shown_set_and_applied(http: httpx.AsyncClient, keys: Keys, db: DB) -> None:
    shown = (await http.get("/api/v1/retention", headers=bearer(keys.viewer))).json()["retention"]
    assert shown[0]["queue"] == "*"
    assert isinstance(shown[0]["completed_keep"], float)
    changed = await http.put("/api/v1/retention/*", json={"completed_keep": "2d", "dead_keep": 3600})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["completed_keep"], changed.json()["dead_keep"]) == (172800.0, 3600.0)
    assert changed.json()["runs_keep"] == shown[0]["runs_keep"]
    assert (await http.post("/api/v1/jobs", json={"task": "api_echo"})).status_code == 201  # the api queue
    own = await http.put("/api/v1/retention/api", json={"completed_max": 10})
    assert own.json()["completed_max"] == 10
    assert own.json()["completed_keep"] == 172800.0

    problem(await http.put("/api/v1/retention/nowhere", json={"completed_max": 1}), 404, "not-found")
    problem(await http.put("/api/v1/retention/*", json={"completed_keep": -5}), 422, "validation")
    problem(await http.put("/api/v1/retention/*", json={"completed_max": -1}), 422, "validation")
    problem(await http.put("/api/v1/retention/*", json={"completed_keep": "1y"}), 422, "validation")
    problem(
        await http.put("/api/v1/retention/*", json={"completed_max": 1}, headers=bearer(keys.operator)), 403
    )
    assert db.one("SELECT completed_max FROM {schema}.retention WHERE queue = 'api'") == 10

    applied = await http.post("/api/v1/retention/apply", json={"budget": 5})
    assert applied.status_code == 200, applied.text
    assert all(isinstance(n, int) for n in applied.json()["steps"].values())
    assert (await http.post("/api/v1/retention/apply")).status_code == 200
    problem(await http.post("/api/v1/retention/apply", json={"budget": 0}), 422, "validation")
    problem(await http.post("/api/v1/retention/apply", json={"budget": 31}), 422, "validation")
    problem(await http.post("/api/v1/retention/apply", headers=bearer(keys.operator)), 403)


async def test_the_scheduler_status(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.get("/api/v1/scheduler", headers=bearer(keys.viewer))
    assert response.status_code == 200
    status = response.json()
    assert status["running"] is False
    assert status["holder"] is None
    assert status["active_schedules"] == 0
    assert status["warning"] is None
    assert (await http.post("/api/v1/schedules", json=cron_body())).status_code == 201
    warned = (await http.get("/api/v1/scheduler")).json()
    assert warned["active_schedules"] == 1
    assert "will not fire" in warned["warning"]


async def test_a_view_refresh_schedule_names_a_materialized_view(http: httpx.AsyncClient, db: DB) -> None:
    """The built-in refresh task's schedule is checked for its view when made and when
    changed, as the CLI's `schedules add --refresh-view` is (one check, in conveyor.ops)."""
    db.all("CREATE MATERIALIZED VIEW {schema}.daily AS SELECT 1 AS n")
    db.all("CREATE TABLE {schema}.plain (n int)")
    body = {"name": "refresh", "cron": "0 * * * *", "task": "conveyor.refresh_materialized_view"}
    problem(
        await http.post("/api/v1/schedules", json={**body, "args": {"view": "plain"}}), 422, "invalid-option"
    )
    problem(
        await http.post("/api/v1/schedules", json={**body, "args": {"view": "nowhere"}}),
        422,
        "invalid-option",
    )
    assert db.one("SELECT count(*) FROM {schema}.schedules") == 0
    made = await http.post("/api/v1/schedules", json={**body, "args": {"view": f"{db.schema}.daily"}})
    assert made.status_code == 201, made.text
    problem(
        await http.patch("/api/v1/schedules/refresh", json={"args": {"view": "plain"}}), 422, "invalid-option"
    )
    assert db.one("SELECT args FROM {schema}.schedules") == made.json()["args"]
