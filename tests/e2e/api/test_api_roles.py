"""The role matrix: every endpoint with no key, a malformed key, a wrong key, a revoked key,
and a key of each role. Without a valid key: 401; with a role below the endpoint's: 403;
with its role or above: neither. A refused request changes nothing in the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from conveyor.api import create_app
from conveyor.api.endpoints import GROUPS
from conveyor.ops.failed_attempts import FailedAttempts
from conveyor.ops.roles import Role

from ...helpers import DB
from .support import Keys, Server, bearer

pytestmark = pytest.mark.processes

ENDPOINTS = [endpoint for group in GROUPS for endpoint in group.endpoints]

# A request for each endpoint: path parameters, then the JSON body (None: none).
SAMPLES: dict[str, tuple[dict[str, Any], Any]] = {
    "list_queues": ({}, None),
    "get_queue": ({"queue": "api"}, None),
    "pause_queue": ({"queue": "api"}, None),
    "resume_queue": ({"queue": "api"}, None),
    "get_limits": ({"queue": "api"}, None),
    "set_limits": ({"queue": "api"}, {"concurrency": 2}),
    "list_tasks": ({}, None),
    "pause_task": ({"task": "api_add"}, None),
    "resume_task": ({"task": "api_add"}, None),
    "get_pauses": ({}, None),
    "pause_all": ({}, None),
    "resume_all": ({}, None),
    "list_jobs": ({}, None),
    "get_job": ({"job_id": "{job}"}, None),
    "enqueue": ({}, {"task": "api_echo"}),
    "enqueue_many": ({}, {"jobs": [{"task": "api_echo"}]}),
    "cancel_job": ({"job_id": "{job}"}, {"reason": "matrix"}),
    "abort_job": ({"job_id": "{job}"}, None),
    "run_job_now": ({"job_id": "{job}"}, None),
    "retry_job": ({"job_id": "{job}"}, None),
    "delete_job": ({"job_id": "{job}"}, None),
    "job_result": ({"job_id": "{job}"}, None),
    "list_dead_jobs": ({}, None),
    "get_dead_job": ({"job_id": "{job}"}, None),
    "retry_dead_job": ({"job_id": "{job}"}, None),
    "retry_dead_jobs": ({}, {"queue": "api"}),
    "purge_dead_jobs": ({}, {"everything": True}),
    "list_schedules": ({}, None),
    "get_schedule": ({"name": "nightly"}, None),
    "create_schedule": ({}, {"name": "other", "cron": "0 * * * *", "task": "api_echo"}),
    "update_schedule": ({"name": "nightly"}, {"cron": "0 5 * * *"}),
    "pause_schedule": ({"name": "nightly"}, None),
    "resume_schedule": ({"name": "nightly"}, None),
    "trigger_schedule": ({"name": "nightly"}, None),
    "delete_schedule": ({"name": "nightly"}, None),
    "schedule_fires": ({"name": "nightly"}, None),
    "show_retention": ({}, None),
    "set_retention": ({"queue": "*"}, {"completed_max": 5}),
    "apply_retention": ({}, {"budget": 1}),
    "scheduler_status": ({}, None),
    "list_workers": ({}, None),
    "list_history": ({}, None),
    "clean_history": ({}, {"older_than": "30d", "budget": 1}),
    "list_exports": ({}, None),
    "download_export": ({"file": "report.csv"}, None),
}

WRONG_KEYS = {
    "no key": {},
    "malformed key": {"Authorization": "Bearer cvk_nope"},
    "wrong key": {"Authorization": "Bearer cvk_0123456789ab_" + "B" * 43},
}

TABLES = ("jobs", "job_history", "dead_jobs", "queues", "schedules", "schedule_fires", "retention", "pauses")


def test_every_endpoint_has_a_sample() -> None:
    assert {e.name for e in ENDPOINTS} == set(SAMPLES)


def snapshot(db: DB) -> dict[str, list[Any]]:
    return {
        table: [row[0] for row in db.all(f"SELECT to_jsonb(t)::text FROM {{schema}}.{table} t ORDER BY 1")]  # noqa: S608 - a fixed table name
        for table in TABLES
    }


@pytest.fixture
async def matrix_url(database_url: str, schema: str, serve: Callable[[ASGIApp], Server], keys: Keys) -> str:
    """The API (with room for the matrix's failed attempts), a job and a schedule to act on."""
    limiter = FailedAttempts(limit=10_000)
    url = serve(create_app(database_url=database_url, schema=schema, failed_attempts=limiter)).url
    async with httpx.AsyncClient(base_url=url, headers=bearer(keys.admin)) as http:
        assert (await http.post("/api/v1/jobs", json={"task": "api_echo", "delay": 3600})).status_code == 201
        schedule = {"name": "nightly", "cron": "0 3 * * *", "task": "api_echo"}
        assert (await http.post("/api/v1/schedules", json=schedule)).status_code == 201
    return url


def request_of(name: str, job_id: int) -> tuple[str, str, Any]:
    endpoint = next(e for e in ENDPOINTS if e.name == name)
    params, body = SAMPLES[name]
    path = endpoint.path
    for key, value in params.items():
        path = path.replace("{" + key + "}", str(value).replace("{job}", str(job_id)))
    if name == "job_result":
        path += "?timeout=0"
    return endpoint.method, "/api/v1" + path, body


async def test_the_role_matrix(matrix_url: str, keys: Keys, db: DB) -> None:
    job_id = int(db.one("SELECT id FROM {schema}.jobs"))
    before = snapshot(db)
    refusals = 0
    async with httpx.AsyncClient(base_url=matrix_url) as http:
        for endpoint in ENDPOINTS:
            method, path, body = request_of(endpoint.name, job_id)
            assert endpoint.role is not None
            headers_by_who = {**WRONG_KEYS, "revoked key": bearer(keys.revoked)}
            for who, headers in headers_by_who.items():
                response = await http.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (endpoint.name, who, response.text)
                refusals += 1
            for role in Role:
                if role < endpoint.role:
                    response = await http.request(method, path, json=body, headers=bearer(keys[role.label]))
                    assert response.status_code == 403, (endpoint.name, role, response.text)
                    assert endpoint.role.label in response.json()["detail"]
                    refusals += 1
    assert refusals > 4 * len(ENDPOINTS)
    assert snapshot(db) == before

    # Each role that may is let through (the request may still be refused for what it asks).
    async with httpx.AsyncClient(base_url=matrix_url) as http:
        for endpoint in ENDPOINTS:
            method, path, body = request_of(endpoint.name, job_id)
            assert endpoint.role is not None
            for role in Role:
                if role >= endpoint.role:
                    response = await http.request(method, path, json=body, headers=bearer(keys[role.label]))
                    assert response.status_code not in (401, 403, 405, 500), (
                        endpoint.name,
                        role,
                        response.text,
                    )
