"""Hostile input against the dashboard through a real server, signed in: every list filter
and every name in a path with hostile text, the schedule form with cron strings and time
zones that are not, a job whose stored arguments are nested past Python's recursion limit.
Pages answer 200, 404 or 422 (a page saying what is wrong), never 500; nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from conveyor.dashboard.session import SESSION_COOKIE, csrf_token

from ..e2e.api.support import Keys
from ..helpers import DB
from .strings import HOSTILE, census
from .test_http_api import url_text, with_query

pytestmark = pytest.mark.processes


@pytest.fixture
async def signed_in(api_url: str, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding an admin's dashboard session."""
    async with httpx.AsyncClient(
        base_url=api_url, cookies={SESSION_COOKIE: keys.admin}, follow_redirects=False, timeout=30
    ) as client:
        yield client


def page_requests(text: str) -> list[tuple[str, str, dict[str, str] | None]]:
    name = url_text(text)
    return [
        ("GET", "/dashboard/jobs", {"queue": text}),
        ("GET", "/dashboard/jobs", {"task": text, "key": text}),
        ("GET", "/dashboard/jobs", {"state": text}),
        ("GET", "/dashboard/jobs", {"q": text}),
        ("GET", "/dashboard/jobs", {"enqueued_after": text, "enqueued_before": text}),
        ("GET", "/dashboard/dead", {"queue": text, "task": text}),
        ("GET", "/dashboard/dead", {"died_after": text}),
        ("GET", "/dashboard/throughput", {"queue": text}),
        ("GET", f"/dashboard/queues/{name}", None),
        ("GET", f"/dashboard/queues/{name}/live", None),
        ("GET", f"/dashboard/schedules/{name}", None),
        ("GET", f"/dashboard/schedules/{name}/fires", None),
        ("GET", f"/dashboard/exports/{name}", None),
        ("GET", "/", {"back": text}),
    ]


async def test_every_filter_and_path_name_takes_hostile_text_without_harm(
    signed_in: httpx.AsyncClient, keys: Keys, db: DB
) -> None:
    before = census(db)
    for text in HOSTILE:
        for method, path, params in page_requests(text):
            response = await signed_in.request(method, with_query(path, params))
            where = (text, path, params)
            assert response.status_code in (200, 400, 404, 422), (
                where,
                response.status_code,
                response.text[-800:],
            )
            assert "Traceback" not in response.text, where
    assert census(db) == before


async def test_posted_names_with_hostile_text_change_nothing(
    signed_in: httpx.AsyncClient, keys: Keys, db: DB
) -> None:
    csrf = csrf_token(keys.admin)
    before = census(db)
    for text in HOSTILE:
        name = url_text(text)
        for path in (
            f"/dashboard/queues/{name}/pause",
            f"/dashboard/queues/{name}/limits",
            f"/dashboard/schedules/{name}/pause",
            f"/dashboard/schedules/{name}/trigger",
            f"/dashboard/schedules/{name}/remove",
        ):
            response = await signed_in.post(path, data={"csrf": csrf, "confirm": "yes", "rate": "1/1s"})
            assert response.status_code in (303, 400, 404, 422), (
                text,
                path,
                response.status_code,
                response.text[-800:],
            )
    assert census(db) == before


def schedule_form(**fields: str) -> dict[str, str]:
    base = {
        "name": "probe",
        "task": "api_add",
        "cron": "0 9 * * *",
        "timezone": "UTC",
        "args": '{"a": 1, "b": 2}',
        "queue": "",
        "priority": "",
        "max_attempts": "",
        "catch_up": "once",
    }
    return base | fields


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("cron", "* * *", "cron"),
        ("cron", "61 * * * *", "cron"),
        ("cron", "@every", "cron"),
        ("cron", "'; DROP TABLE schedules; --", "cron"),
        ("timezone", "Europe/Nowhere", "time zone"),
        ("timezone", "../../etc/passwd", "time zone"),
        ("name", "a'; DROP TABLE schedules; --", "name"),
        ("task", "a'; DROP TABLE schedules; --", "task"),
    ],
)
async def test_the_schedule_form_refuses_cron_and_zones_that_are_not_saying_why(
    signed_in: httpx.AsyncClient, keys: Keys, db: DB, field: str, value: str, words: str
) -> None:
    data = schedule_form(**{field: value}) | {"csrf": csrf_token(keys.admin)}
    response = await signed_in.post("/dashboard/new-schedule", data=data)
    assert response.status_code == 422, (response.status_code, response.text[-2000:])
    assert words in response.text.lower()
    assert db.one("SELECT count(*) FROM {schema}.schedules") == 0


async def test_a_job_with_args_nested_past_the_recursion_limit_has_its_page(
    signed_in: httpx.AsyncClient, db: DB
) -> None:
    """conveyor.enqueue stores them; the job's page was a 500 (RecursionError in redaction)."""
    db.all("SELECT {schema}.create_queue('api')")
    nested = '{"value": ' + "[" * 10_000 + "]" * 10_000 + "}"
    job_id = int(db.one("SELECT {schema}.enqueue('api_echo', %s::jsonb, queue => 'api')", [nested]))
    response = await signed_in.get(f"/dashboard/jobs/{job_id}")
    assert response.status_code == 200, response.text[-2000:]
    assert "nested more than" in response.text
    assert (await signed_in.get("/dashboard/jobs")).status_code == 200
