"""Hostile input against the HTTP API (/api/v1) through a real server: tokens that are almost
right, every filter and path name with hostile text, bodies at and past the size limits,
requests with huge query strings and headers. Every refusal is a problem document (4xx) that
says why and echoes no secret; no request leaves a trace in the tables."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.types import ASGIApp

from conveyor.api import create_app
from conveyor.ops.failed_attempts import FailedAttempts
from conveyor.settings import MAX_ARGS_BYTES

from ..e2e.api.support import Keys, Server, bearer, problem
from ..helpers import DB
from .strings import HOSTILE, STORABLE, census

pytestmark = pytest.mark.processes


@pytest.fixture
def lenient_url(database_url: str, schema: str, serve: Callable[[ASGIApp], Server]) -> str:
    """The API with room for the many refused requests below (the failed-attempt limit of
    one client is tested in tests/e2e/api/test_api_framework.py)."""
    limiter = FailedAttempts(limit=1_000_000)
    return serve(create_app(database_url=database_url, schema=schema, failed_attempts=limiter)).url


def almost_right(token: str) -> dict[str, str]:
    """Tokens one step from ``token``: each must be refused as the docs say, no more."""
    head, prefix, secret = token.split("_", 2)
    other = "A" if secret[-1] != "A" else "B"
    digit = "0" if prefix[0] != "0" else "1"
    return {
        "last character of the secret changed": f"{head}_{prefix}_{secret[:-1]}{other}",
        "first character of the prefix changed": f"{head}_{digit}{prefix[1:]}_{secret}",
        "secret one character short": f"{head}_{prefix}_{secret[:-1]}",
        "secret one character long": f"{head}_{prefix}_{secret}A",
        "wrong scheme prefix": f"cvx_{prefix}_{secret}",
        "upper-case scheme prefix": f"CVK_{prefix}_{secret}",
        "prefix and secret swapped": f"{head}_{secret}_{prefix}",
        "token in quotes": f'"{token}"',
    }


async def test_tokens_that_are_almost_right_are_refused_alike_and_echo_nothing(
    lenient_url: str, keys: Keys
) -> None:
    """An unknown prefix and a known prefix with a wrong secret get the same answer: the
    refusal does not tell whether a key id exists (ops.keys compares against a dummy hash
    when none does). A malformed token is said to be malformed."""
    async with httpx.AsyncClient(base_url=lenient_url) as http:
        for what, token in almost_right(keys.admin).items():
            response = await http.get("/api/v1/queues", headers=bearer(token))
            body = problem(response, 401, "unauthenticated")
            assert token not in response.text, what
            assert keys.admin.split("_", 2)[2] not in response.text, what
            assert response.headers["www-authenticate"].startswith('Bearer realm="conveyor"'), what
            assert "malformed" in body["detail"] or body["detail"] == "unknown API key", (what, body)
        unknown = (
            await http.get(
                "/api/v1/queues",
                headers=bearer(almost_right(keys.admin)["first character of the prefix changed"]),
            )
        ).json()
        wrong_secret = (
            await http.get(
                "/api/v1/queues",
                headers=bearer(almost_right(keys.admin)["last character of the secret changed"]),
            )
        ).json()
        assert unknown["detail"] == wrong_secret["detail"] == "unknown API key"
        assert unknown.keys() == wrong_secret.keys()
        revoked = problem(await http.get("/api/v1/queues", headers=bearer(keys.revoked)), 401)
        assert "revoked" in revoked["detail"]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"", "no credentials"),
        (b"Bearer", "no credentials|malformed"),
        (b"Bearer " + b"A" * 10_000, "malformed"),
        ("Bearer cvk_0123456789ab_é".encode() + b"A" * 41, "malformed"),
        (b"Bearer cvk_0123456789ab_" + b"\xff" * 43, "malformed"),
        (b"Token cvk_0123456789ab_" + b"A" * 43, "malformed"),
    ],
)
async def test_empty_long_and_non_ascii_tokens_are_401_problems(
    lenient_url: str, keys: Keys, header: bytes, reason: str
) -> None:
    async with httpx.AsyncClient(base_url=lenient_url) as http:
        response = await http.get("/api/v1/queues", headers=[(b"Authorization", header)])
    body = problem(response, 401, "unauthenticated")
    assert any(word in body["detail"] for word in reason.split("|")), body
    assert "A" * 40 not in response.text


async def test_a_token_with_a_nul_byte_is_refused_by_the_server_without_a_crash(
    lenient_url: str, keys: Keys
) -> None:
    """HTTP forbids NUL in a header: the HTTP server refuses the request before the API
    reads it (400), and goes on serving."""
    host, port = lenient_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"GET /api/v1/queues HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer "
            + keys.admin[:-1].encode()
            + b"\x00\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 4"), head
    async with httpx.AsyncClient(base_url=lenient_url, headers=bearer(keys.viewer)) as http:
        assert (await http.get("/api/v1/queues")).status_code == 200


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("viewer", "POST", "/api/v1/jobs", {"task": "api_add", "args": {"a": 1, "b": 2}}),
        ("viewer", "POST", "/api/v1/queues/api/pause", None),
        ("operator", "POST", "/api/v1/schedules", {"name": "s", "cron": "* * * * *", "task": "api_add"}),
        ("operator", "POST", "/api/v1/dead-jobs/purge", {"all": True}),
        ("operator", "POST", "/api/v1/history/clean", {"older_than": "1d"}),
    ],
)
async def test_a_lower_role_on_a_higher_route_is_a_403_naming_the_role_needed(
    lenient_url: str, keys: Keys, db: DB, role: str, method: str, path: str, body: Any
) -> None:
    before = census(db)
    async with httpx.AsyncClient(base_url=lenient_url, headers=bearer(keys[role])) as http:
        response = await http.request(method, path, json=body)
    found = problem(response, 403, "forbidden")
    assert "operator" in found["detail"] or "admin" in found["detail"], found
    assert census(db) == before


def url_text(text: str) -> str:
    """``text`` percent-encoded for a URL; a lone surrogate as the (invalid) UTF-8 bytes a
    client could send for it."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def with_query(path: str, params: dict[str, str] | None) -> str:
    if not params:
        return path
    return path + "?" + "&".join(f"{key}={url_text(value)}" for key, value in params.items())


def filter_requests(text: str) -> list[tuple[str, str, dict[str, str] | None]]:
    """Every listing filter and every path name of the API, given ``text``."""
    name = url_text(text)
    return [
        ("GET", "/api/v1/jobs", {"task": text}),
        ("GET", "/api/v1/jobs", {"key": text, "unique_key": text}),
        ("GET", "/api/v1/jobs", {"queue": text}),
        ("GET", "/api/v1/jobs", {"state": text}),
        ("GET", "/api/v1/jobs", {"id": text}),
        ("GET", "/api/v1/jobs", {"cursor": text}),
        ("GET", "/api/v1/jobs", {"enqueued_after": text}),
        ("GET", "/api/v1/jobs", {"limit": text}),
        ("GET", "/api/v1/history", {"task": text, "key": text, "state": text}),
        ("GET", "/api/v1/history", {"cursor": text}),
        ("GET", "/api/v1/dead-jobs", {"task": text, "queue": text}),
        ("GET", "/api/v1/dead-jobs", {"died_after": text}),
        ("GET", "/api/v1/workers", {"lease": text}),
        ("GET", f"/api/v1/queues/{name}", None),
        ("GET", f"/api/v1/schedules/{name}", None),
        ("GET", f"/api/v1/schedules/{name}/fires", None),
        ("POST", f"/api/v1/schedules/{name}/pause", None),
        ("POST", f"/api/v1/schedules/{name}/trigger", None),
        ("DELETE", f"/api/v1/schedules/{name}", None),
        ("POST", f"/api/v1/queues/{name}/pause", None),
        ("GET", f"/api/v1/exports/{name}", None),
        ("GET", f"/api/v1/jobs/{name}", None),
    ]


async def test_every_filter_and_path_name_takes_hostile_text_without_harm(
    lenient_url: str, keys: Keys, db: DB
) -> None:
    """Each request is answered 200 (an empty page), 404 or 422, never 5xx; refusals are
    problem documents; no table changes."""
    async with httpx.AsyncClient(base_url=lenient_url, headers=bearer(keys.admin), timeout=30) as http:
        assert (await http.post("/api/v1/jobs", json={"task": "api_echo", "args": {}})).status_code == 201
        before = census(db)
        for text in HOSTILE:
            for method, path, params in filter_requests(text):
                response = await http.request(method, with_query(path, params))
                where = (text, method, path, params)
                assert response.status_code in (200, 404, 422), (where, response.status_code, response.text)
                if response.status_code == 200:
                    page = response.json()
                    assert not any(page.get(k) for k in ("jobs", "dead_jobs", "fires")), (where, page)
                else:
                    assert response.headers["content-type"].startswith("application/problem+json"), where
                    assert "Traceback" not in response.text, where
        assert census(db) == before


async def test_task_pause_names_round_trip_and_bodies_keep_free_text_exactly(
    lenient_url: str, keys: Keys, db: DB
) -> None:
    async with httpx.AsyncClient(base_url=lenient_url, headers=bearer(keys.admin), timeout=30) as http:
        for text in STORABLE:
            if "/" in text or "\n" in text or "\t" in text:
                continue  # no path segment holds them
            name = quote(text, safe="")
            assert (await http.post(f"/api/v1/tasks/{name}/pause")).status_code == 200, text
            assert db.one("SELECT name FROM {schema}.pauses WHERE scope = 'task'") == text
            assert (await http.post(f"/api/v1/tasks/{name}/resume")).status_code == 200, text
        for text in STORABLE:
            made = await http.post(
                "/api/v1/jobs",
                json={
                    "task": "api_echo",
                    "args": {"value": text},
                    "unique_key": text,
                    "key": text,
                    "meta": {text: text},
                },
            )
            assert made.status_code == 201, (text, made.text)
            shown = (await http.get(f"/api/v1/jobs/{made.json()['id']}")).json()
            assert (shown["args"], shown["unique_key"], shown["key"], shown["meta"]) == (
                {"value": text},
                text,
                text,
                {text: text},
            )
            found = (await http.get("/api/v1/jobs", params={"unique_key": text})).json()["jobs"]
            assert [job["id"] for job in found] == [made.json()["id"]], text


async def test_hostile_names_in_bodies_are_422_problems_that_change_nothing(
    lenient_url: str, keys: Keys, db: DB
) -> None:
    before = census(db)
    async with httpx.AsyncClient(base_url=lenient_url, headers=bearer(keys.admin), timeout=30) as http:
        for text in HOSTILE:
            bodies = [
                ("/api/v1/jobs", {"task": text}),
                ("/api/v1/jobs", {"task": "api_echo", "queue": text}),
                ("/api/v1/jobs/bulk", {"jobs": [{"task": "api_echo"}, {"task": "api_echo", "queue": text}]}),
                ("/api/v1/schedules", {"name": text, "cron": "* * * * *", "task": "api_add"}),
                ("/api/v1/schedules", {"name": "s", "cron": text, "task": "api_add"}),
                (
                    "/api/v1/schedules",
                    {"name": "s", "cron": "* * * * *", "task": "api_add", "timezone": text},
                ),
            ]
            for path, body in bodies:
                # Escaped as JSON allows (a lone surrogate as \ud800), as any client may send it.
                content = json.dumps(body).encode()
                response = await http.post(
                    path, content=content, headers={"Content-Type": "application/json"}
                )
                assert response.status_code in (400, 404, 422), (
                    text,
                    path,
                    response.status_code,
                    response.text,
                )
                problem(response, response.status_code)
    assert census(db) == before


@pytest.mark.parametrize(
    ("cron", "timezone", "words"),
    [
        ("* * *", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("@every", "UTC", "cron"),
        ("0 9 * * *", "Europe/Nowhere", "time zone"),
        ("0 9 * * *", "../../etc/passwd", "time zone"),
        ("0 9 * * *", "", "time zone"),
    ],
)
async def test_cron_strings_and_time_zones_that_are_not_are_422_on_create_and_change(
    http: httpx.AsyncClient, db: DB, cron: str, timezone: str, words: str
) -> None:
    body = {"name": "s", "cron": cron, "task": "api_add", "args": {"a": 1, "b": 2}, "timezone": timezone}
    found = problem(await http.post("/api/v1/schedules", json=body), 422)
    assert words in json.dumps(found) or "/timezone" in json.dumps(found), found
    good = {**body, "cron": "0 9 * * *", "timezone": "UTC"}
    assert (await http.post("/api/v1/schedules", json=good)).status_code == 201
    found = problem(await http.patch("/api/v1/schedules/s", json={"cron": cron, "timezone": timezone}), 422)
    assert words in json.dumps(found) or "/timezone" in json.dumps(found), found
    assert db.one("SELECT cron, timezone FROM {schema}.schedules") == ("0 9 * * *", "UTC")


async def test_args_at_the_size_limit_are_taken_and_one_byte_more_is_refused(
    http: httpx.AsyncClient, db: DB
) -> None:
    empty = len(json.dumps({"value": ""}, separators=(",", ":")))
    at_limit = {"value": "x" * (MAX_ARGS_BYTES - empty)}
    made = await http.post("/api/v1/jobs", json={"task": "api_echo", "args": at_limit})
    assert made.status_code == 201, made.text[:300]
    before = census(db)
    over = {"value": at_limit["value"] + "x"}
    found = problem(await http.post("/api/v1/jobs", json={"task": "api_echo", "args": over}), 422)
    assert "byte limit" in found["detail"] or "byte limit" in json.dumps(found.get("errors")), found
    found = problem(
        await http.post("/api/v1/jobs/bulk", json={"jobs": [{"task": "api_echo", "args": over}]}), 422
    )
    assert census(db) == before


async def test_huge_query_strings_and_headers_are_refused_and_the_server_goes_on(
    lenient_url: str, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=lenient_url, headers=bearer(keys.viewer), timeout=30) as http:
        long_query = await http.get("/api/v1/jobs", params={"task": "t" * 60_000})
        assert long_query.status_code in (414, 422, 431, 400), long_query.status_code
        many = await http.get("/api/v1/jobs?" + "&".join(f"x{n}=1" for n in range(5_000)))
        assert many.status_code in (414, 422, 431, 400), many.status_code
        # The HTTP server bounds headers, or not (uvicorn's httptools parser takes this one):
        # either way the API answers, refuses or is cut off, and goes on serving.
        try:
            huge_header = await http.get("/api/v1/jobs", headers={"X-Filler": "y" * 200_000})
        except httpx.RemoteProtocolError:
            pass  # the HTTP server closed the connection on it: refused, nothing to read
        else:
            assert huge_header.status_code in (200, 400, 431), huge_header.status_code
        assert (await http.get("/api/v1/jobs")).status_code == 200


async def test_a_job_whose_args_sql_nested_past_the_recursion_limit_is_shown_clipped(
    http: httpx.AsyncClient, db: DB
) -> None:
    nested = '{"value": ' + "[" * 10_000 + "]" * 10_000 + "}"
    db.all("SELECT {schema}.create_queue('api')")
    job_id = int(db.one("SELECT {schema}.enqueue('api_echo', %s::jsonb, queue => 'api')", [nested]))
    response = await http.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text[:500]
    assert "nested more than" in response.text
    listed = await http.get("/api/v1/jobs")
    assert listed.status_code == 200
