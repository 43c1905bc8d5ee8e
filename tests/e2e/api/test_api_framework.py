"""The API's frame, through HTTP: the OpenAPI document and docs page, problem documents for
every refusal (no route, wrong method, credentials, roles, malformed or oversized bodies,
wrong types), 500s that leak nothing, 503 when the database is away."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp

from conveyor.api import create_app
from conveyor.api.endpoints import GROUPS
from conveyor.api.routing import Call, Group, Output
from conveyor.ops.failed_attempts import FailedAttempts
from conveyor.ops.roles import Role

from ...helpers import DB
from .support import Keys, Server, bearer, problem

pytestmark = pytest.mark.processes


async def test_the_openapi_document_lists_every_endpoint_of_the_route_table(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    served = {(method, path) for path, methods in doc["paths"].items() for method in methods}
    declared = {(e.method.lower(), "/api/v1" + e.path) for g in GROUPS for e in g.endpoints}
    assert served == declared
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            assert operation["x-conveyor-role"] in ("viewer", "operator", "admin"), (method, path)
            assert operation["security"] == [{"apiKey": []}]
            assert "default" in operation["responses"]
            assert "401" in operation["responses"]


async def test_the_docs_page_renders_every_operation_and_fetches_nothing(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/docs", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    for group in GROUPS:
        for endpoint in group.endpoints:
            assert f'id="{endpoint.name}"' in page


async def test_no_such_endpoint_and_wrong_method_are_problems(http: httpx.AsyncClient) -> None:
    problem(await http.get("/api/v1/nothing-here"), 404, "no-such-endpoint")
    problem(await http.get("/no-such-page"), 404, "no-such-endpoint")
    body = problem(await http.delete("/api/v1/queues"), 405, "method-not-allowed")
    assert body["instance"] == "/api/v1/queues"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no credentials"),
        ("Basic dXNlcjpwYXNz", "malformed Authorization header"),
        ("Bearer not-a-key", "malformed API key"),
        ("Bearer cvk_0123456789ab_" + "A" * 43, "unknown API key"),
    ],
)
async def test_requests_without_a_valid_key_are_refused(
    api_url: str, keys: Keys, header: str | None, reason: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(base_url=api_url) as http:
        body = problem(await http.get("/api/v1/queues", headers=headers), 401, "unauthenticated")
    assert reason in body["detail"]
    assert "A" * 43 not in body["detail"]


async def test_a_revoked_key_is_refused_and_the_challenge_names_bearer(api_url: str, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.get("/api/v1/queues", headers=bearer(keys.revoked))
        body = problem(response, 401, "unauthenticated")
        assert "revoked" in body["detail"]
        assert response.headers["www-authenticate"] == 'Bearer realm="conveyor", error="invalid_token"'
        missing = await http.get("/api/v1/queues")
        assert missing.headers["www-authenticate"] == 'Bearer realm="conveyor"'


async def test_a_client_that_keeps_failing_is_told_to_wait_even_with_a_good_key(
    database_url: str, schema: str, keys: Keys, serve: Callable[[ASGIApp], Server]
) -> None:
    limiter = FailedAttempts(limit=3, window=600)
    url = serve(create_app(database_url=database_url, schema=schema, failed_attempts=limiter)).url
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/api/v1/queues", headers=bearer(keys.viewer))).status_code == 200
        for _ in range(3):
            problem(await http.get("/api/v1/queues", headers=bearer(keys.revoked)), 401)
        response = await http.get("/api/v1/queues", headers=bearer(keys.viewer))
        problem(response, 429, "too-many-failed-attempts")
        assert 1 <= int(response.headers["retry-after"]) <= 600


async def test_a_role_below_the_endpoints_is_refused_before_its_body_is_read(
    api_url: str, keys: Keys, db: DB
) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        body = problem(
            await http.post("/api/v1/jobs", headers=bearer(keys.viewer), json={"task": "api_add"}),
            403,
            "forbidden",
        )
        assert "operator" in body["detail"]
        # Even a body that would not parse: the role is refused first.
        problem(
            await http.post("/api/v1/jobs", headers=bearer(keys.viewer), content=b"{not json"),
            403,
            "forbidden",
        )
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0


async def test_malformed_json_wrong_media_type_and_wrong_types(http: httpx.AsyncClient, db: DB) -> None:
    json_type = {"Content-Type": "application/json"}
    problem(await http.post("/api/v1/jobs", content=b'{"task": ', headers=json_type), 400, "malformed-json")
    problem(
        await http.post(
            "/api/v1/jobs", content=b'{"task": "api_add", "args": {"a": NaN}}', headers=json_type
        ),
        400,
        "malformed-json",
    )
    problem(
        await http.post("/api/v1/jobs", content=b'{"task": "\\ud800"}', headers=json_type),
        400,
        "malformed-json",
    )
    problem(await http.post("/api/v1/jobs", content=b"\xff\xfe", headers=json_type), 400, "malformed-json")
    problem(
        await http.post(
            "/api/v1/jobs", content=b'{"task": "api_add"}', headers={"Content-Type": "text/plain"}
        ),
        415,
        "unsupported-media-type",
    )
    problem(await http.post("/api/v1/jobs", content=b'{"task": "api_add"}', headers={}), 415)
    body = problem(
        await http.post("/api/v1/jobs", json={"task": 5, "priority": True, "extra": 1}), 422, "validation"
    )
    fields = {(e["location"], e["field"]) for e in body["errors"]}
    assert {("body", "/task"), ("body", "/extra")} <= fields
    assert any(f[1].startswith("/priority") for f in fields)
    problem(await http.post("/api/v1/jobs", json=["task"]), 422, "validation")
    problem(await http.post("/api/v1/jobs", json={}), 422, "validation")
    problem(await http.post("/api/v1/jobs", content=b"", headers=json_type), 422, "validation")
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0


async def test_no_string_may_hold_nul_wherever_it_comes(http: httpx.AsyncClient, db: DB) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL: refused with the field named, never a 500."""
    body = problem(await http.get("/api/v1/jobs", params={"task": "a\x00b"}), 422, "validation")
    assert body["errors"] == [{"location": "query", "field": "task", "detail": body["errors"][0]["detail"]}]
    body = problem(await http.post("/api/v1/tasks/a%00b/pause"), 422, "validation")
    assert body["errors"][0]["location"] == "path"
    body = problem(await http.post("/api/v1/jobs", json={"task": "api_echo", "args": {"x/y": "\x00"}}), 422)
    assert body["errors"][0]["field"] == "/args/x~1y"
    # The text "\u0000" (an escaped backslash, then u0000) is no NUL.
    response = await http.post("/api/v1/jobs", json={"task": "api_echo", "args": {"value": "\\u0000"}})
    assert response.status_code == 201, response.text
    assert db.one("SELECT args ->> 'value' FROM {schema}.jobs") == "\\u0000"
    assert db.one("SELECT count(*) FROM {schema}.pauses") == 0


async def test_deep_nesting_is_refused_whatever_its_depth(http: httpx.AsyncClient, db: DB) -> None:
    json_type = {"Content-Type": "application/json"}

    def nested(depth: int) -> bytes:
        return b'{"task": "api_echo", "args": {"value": ' + b"[" * depth + b"]" * depth + b"}}"

    assert (await http.post("/api/v1/jobs", content=nested(100), headers=json_type)).status_code == 201
    for depth in (300, 1000, 1100, 100_000):
        body = problem(
            await http.post("/api/v1/jobs", content=nested(depth), headers=json_type), 422, "validation"
        )
        assert "nested" in body["detail"]
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 1


async def test_query_and_path_parameters_are_checked(http: httpx.AsyncClient) -> None:
    body = problem(await http.get("/api/v1/jobs", params={"limit": "many"}), 422, "validation")
    assert body["errors"][0]["location"] == "query"
    assert body["errors"][0]["field"] == "limit"
    problem(await http.get("/api/v1/jobs", params={"nope": "1"}), 422, "validation")
    problem(await http.get("/api/v1/jobs?limit=1&limit=2"), 422, "validation")
    body = problem(await http.get("/api/v1/jobs/abc"), 422, "validation")
    assert body["errors"][0] == {"location": "path", "field": "job_id", "detail": body["errors"][0]["detail"]}
    problem(await http.get("/api/v1/jobs/0"), 422, "validation")
    problem(await http.get(f"/api/v1/jobs/{2**63}"), 422, "validation")


async def test_an_oversized_body_is_refused_while_it_streams(
    database_url: str, schema: str, keys: Keys, serve: Callable[[ASGIApp], Server], db: DB
) -> None:
    """A declared length past the limit is refused unread; a chunked body is refused once
    it passes the limit, while the client is still sending (the answer comes before the
    body's end, which is never sent)."""
    url = serve(create_app(database_url=database_url, schema=schema, body_limit=1000)).url
    async with httpx.AsyncClient(base_url=url, headers=bearer(keys.admin)) as http:
        declared = await http.post(
            "/api/v1/jobs", content=b"x" * 1001, headers={"Content-Type": "application/json"}
        )
        problem(declared, 413, "body-too-large")

    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + keys.admin.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b'{"task": "api_echo", "args": {"value": "' + b"x" * 1200
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")  # and no last chunk
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"application/problem+json" in head
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0


failing = Group("test", "Endpoints that fail, for these tests only.")


class Nothing(Output):
    pass


@failing.route("GET", "/boom", role=Role.VIEWER, summary="Fails")
async def boom(call: Call) -> Nothing:
    raise RuntimeError("secret password=hunter2 in a message")


async def test_an_unexpected_failure_is_a_500_that_leaks_nothing_and_is_logged_once(
    database_url: str,
    schema: str,
    keys: Keys,
    serve: Callable[[ASGIApp], Server],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = serve(create_app(database_url=database_url, schema=schema, groups=[*GROUPS, failing])).url
    with caplog.at_level(logging.ERROR, logger="conveyor.api"):
        async with httpx.AsyncClient(base_url=url, headers=bearer(keys.viewer)) as http:
            response = await http.get("/api/v1/boom")
    body = problem(response, 500, "internal")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    records = [r for r in caplog.records if r.name == "conveyor.api"]
    assert len(records) == 1
    assert records[0].error_id == body["error_id"]  # type: ignore[attr-defined]
    assert records[0].path == "/api/v1/boom"  # type: ignore[attr-defined]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_database_out_of_reach_is_a_503_and_the_app_still_starts(
    serve: Callable[[ASGIApp], Server],
) -> None:
    url = serve(create_app(database_url=f"postgresql://nobody@127.0.0.1:{_closed_port()}/none")).url
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/api/v1/queues", headers=bearer("cvk_0123456789ab_" + "A" * 43))
        problem(response, 503, "database-unavailable")
        assert response.headers["retry-after"] == "1"
        assert (await http.get("/api/v1/openapi.json")).status_code == 200
        health = await http.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "down"
        problem(await http.get("/metrics"), 503, "database-unavailable")


async def test_health_and_metrics_are_served_beside_the_api(http: httpx.AsyncClient) -> None:
    """Without a key, as orchestrators and Prometheus probe them (docs/operations.md)."""
    assert (
        await http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": 1, "b": 2}})
    ).status_code == 201
    health = await http.get("/health", headers={"Authorization": ""})
    assert health.status_code == 200, health.text
    assert health.json()["status"] in ("ok", "degraded")
    scraped = await http.get("/metrics", headers={"Authorization": ""})
    assert scraped.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(scraped.text)}
    depth = {
        (sample.labels["queue"], sample.labels["state"]): sample.value
        for sample in families["conveyor_queue_jobs"].samples
    }
    assert depth[("api", "available")] == 1


async def test_problems_are_counted_on_metrics(http: httpx.AsyncClient) -> None:
    async def counted(kind: str) -> float:
        text = (await http.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            if family.name == "conveyor_api_problems":
                for sample in family.samples:
                    if sample.name.endswith("_total") and sample.labels["type"] == kind:
                        return sample.value
        return 0.0

    before = await counted("validation")
    for _ in range(3):
        problem(await http.get("/api/v1/jobs", params={"limit": "x"}), 422, "validation")
    assert await counted("validation") == before + 3
