"""The dashboard's session and CSRF rules over real HTTP (httpx against uvicorn serving
create_app): redirects without a session, the cookie's attributes, the login form's token,
CSRF on every POST, the failed-attempt limit shared with the API, and the app mounted under
a prefix."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from conveyor.api import create_app
from conveyor.dashboard.session import SESSION_COOKIE, csrf_token
from conveyor.ops.failed_attempts import FailedAttempts

from ...helpers import DB
from ..api.support import Keys, Server, bearer
from .conftest import QUEUE, enqueue

pytestmark = pytest.mark.processes


async def log_in(http: httpx.AsyncClient, key: str, prefix: str = "", **headers: str) -> httpx.Response:
    """Fill the login form as a browser would: GET it (its token and cookie), POST it (with
    ``headers``)."""
    form = await http.get(prefix + "/login")
    assert form.status_code == 200, form.text
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found
    return await http.post(prefix + "/login", data={"csrf": found[1], "key": key}, headers=headers)


def paused(db: DB) -> bool:
    return bool(db.one("SELECT paused FROM {schema}.queues WHERE name = %s", [QUEUE]))


async def test_without_a_session_pages_redirect_to_login_and_posts_are_refused(
    app_url: str, keys: Keys, db: DB
) -> None:
    enqueue(app_url, keys)
    async with httpx.AsyncClient(base_url=app_url) as http:
        response = await http.get("/")
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        fragment = await http.get("/dashboard/queues", headers={"HX-Request": "true"})
        assert fragment.status_code == 401
        assert fragment.headers["hx-redirect"] == "/login"
        refused = await http.post(f"/dashboard/queues/{QUEUE}/pause", data={"csrf": csrf_token(keys.admin)})
        assert refused.status_code == 403
        # A cookie holding a key that is not (or no longer) valid: back to login, cookie cleared.
        http.cookies.set(SESSION_COOKIE, keys.revoked)
        response = await http.get("/")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?ended=1"
        assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert not paused(db)


async def test_the_session_cookie_is_httponly_strict_and_secure_over_https(app_url: str, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=app_url) as http:
        response = await log_in(http, keys.viewer)
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
        )
        attributes = [a.strip().lower() for a in cookie.split(";")]
        assert "httponly" in attributes
        assert "samesite=strict" in attributes
        assert "path=/" in attributes
        assert "secure" not in attributes
        page = await http.get("/")
        assert page.status_code == 200
        assert keys.viewer not in page.text  # the key never reaches a page; its CSRF token does
        assert csrf_token(keys.viewer) in page.text
    # Behind a proxy that terminates TLS (uvicorn trusts X-Forwarded-Proto from 127.0.0.1).
    async with httpx.AsyncClient(base_url=app_url) as http:
        response = await log_in(http, keys.viewer, **{"X-Forwarded-Proto": "https"})
        assert response.status_code == 303
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
        )
        assert "secure" in [a.strip().lower() for a in cookie.split(";")]


async def test_a_login_without_the_forms_token_is_refused(app_url: str, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=app_url) as http:
        response = await http.post("/login", data={"key": keys.admin})
        assert response.status_code == 403
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
        await http.get("/login")  # a login cookie, but a different value in the form
        response = await http.post("/login", data={"key": keys.admin, "csrf": "forged"})
        assert response.status_code == 403
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


async def test_a_post_without_a_valid_csrf_token_is_refused(app_url: str, keys: Keys, db: DB) -> None:
    enqueue(app_url, keys)
    async with httpx.AsyncClient(base_url=app_url) as http:
        assert (await log_in(http, keys.operator)).status_code == 303
        for data in ({}, {"csrf": ""}, {"csrf": csrf_token(keys.admin)}, {"csrf": "0" * 64}):
            refused = await http.post(f"/dashboard/queues/{QUEUE}/pause", data=data)
            assert refused.status_code == 403, data
            assert "CSRF" in refused.text
        assert not paused(db)
        # Logout is CSRF-checked too: refused, the session still works.
        assert (await http.post("/logout", data={})).status_code == 403
        assert (await http.get("/")).status_code == 200
        # The token in the header (as htmx would send it) is accepted.
        done = await http.post(
            f"/dashboard/queues/{QUEUE}/pause", headers={"X-CSRF-Token": csrf_token(keys.operator)}
        )
        assert done.status_code == 303
        assert paused(db)
        # An unknown queue is not created by pausing it.
        missing = await http.post("/dashboard/queues/nope/pause", data={"csrf": csrf_token(keys.operator)})
        assert missing.status_code == 404
        assert db.one("SELECT count(*) FROM {schema}.queues WHERE name = 'nope'") == 0
        out = await http.post("/logout", data={"csrf": csrf_token(keys.operator)})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert (await http.get("/")).status_code == 303


async def test_failed_logins_count_against_the_apis_limit(
    database_url: str, schema: str, keys: Keys, serve: Callable[[ASGIApp], Server]
) -> None:
    app = create_app(
        database_url=database_url, schema=schema, failed_attempts=FailedAttempts(limit=2, window=60)
    )
    url = serve(app).url
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(2):
            response = await log_in(http, keys.revoked)
            assert response.status_code == 401
            assert "That API key was refused" in response.text
        response = await log_in(http, keys.admin)  # even the right key, now
        assert response.status_code == 429
        assert "too many failed authentication attempts" in response.text
        assert int(response.headers["retry-after"]) >= 1
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
        api = await http.get("/api/v1/queues", headers=bearer(keys.admin))
        assert api.status_code == 429  # one limit for the API and the dashboard
        http.cookies.set(SESSION_COOKIE, keys.admin)  # a session's page, locked out alike
        page = await http.get("/")
        assert page.status_code == 429
        assert int(page.headers["retry-after"]) >= 1


async def test_the_dashboard_mounted_under_a_prefix(
    database_url: str, schema: str, keys: Keys, db: DB, serve: Callable[[ASGIApp], Server]
) -> None:
    host = Starlette(routes=[Mount("/jobs", app=create_app(database_url=database_url, schema=schema))])
    url = serve(host).url
    enqueue(url + "/jobs", keys)
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/jobs/")
        assert response.status_code == 303
        assert response.headers["location"] == "/jobs/login"
        form = await http.get("/jobs/login")
        assert 'action="/jobs/login"' in form.text
        assert 'href="/jobs/dashboard/static/dashboard.css"' in form.text
        assert (await http.get("/jobs/dashboard/static/dashboard.css")).status_code == 200
        assert (await http.get("/jobs/dashboard/static/vendor/htmx/htmx.min.js")).status_code == 200
        response = await log_in(http, keys.operator, prefix="/jobs")
        assert response.status_code == 303
        assert response.headers["location"] == "/jobs/"
        assert "path=/jobs" in response.headers["set-cookie"].lower()
        page = await http.get("/jobs/")
        assert page.status_code == 200
        assert 'hx-get="/jobs/dashboard/queues"' in page.text
        assert f'action="/jobs/dashboard/queues/{QUEUE}/pause"' in page.text
        done = await http.post(
            f"/jobs/dashboard/queues/{QUEUE}/pause", data={"csrf": csrf_token(keys.operator)}
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/jobs/"
        assert paused(db)


async def test_a_database_that_cannot_answer_gives_a_503_page_and_keeps_the_connection(
    serve: Callable[[ASGIApp], Server], schema: str
) -> None:
    """A page whose database work fails (here: nothing listens at the database's port) is an
    error page with 503 and Retry-After, counted and logged, not an exception: uvicorn would
    close the keep-alive connection under the next request."""
    from conveyor.api.problems import COUNTS, UNAVAILABLE

    before = COUNTS.count(UNAVAILABLE)
    url = serve(create_app(database_url="postgresql://postgres@127.0.0.1:9/none", schema=schema)).url
    async with httpx.AsyncClient(base_url=url, follow_redirects=False, timeout=60) as http:
        for _ in range(2):  # the second on the same connection
            answer = await log_in(http, "cvk_whatever")
            assert answer.status_code == 503, answer.text
            assert "the database cannot be reached now" in answer.text
            assert answer.headers["retry-after"] == "1"
            assert answer.headers["content-type"].startswith("text/html")
    assert COUNTS.count(UNAVAILABLE) == before + 2
