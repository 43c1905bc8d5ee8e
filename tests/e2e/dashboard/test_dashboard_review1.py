"""An adversarial review of the dashboard's shared machinery, dead letters and workers: the
requests a clumsy operator or an attacker sends, through uvicorn serving create_app on a real
database, with real ``conveyor worker`` processes killing and running the jobs. Each test is a
finding: bad input that crashed a page (500), or an action that took more than what its
confirmation said, or ran a job twice."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Page, Route

from ...helpers import DB, wait_until_sync
from ..api.conftest import workers  # noqa: F401 - the API tests' worker processes
from ..api.support import Keys, Workers
from .conftest import enqueue_job, log_in, session

TASKS = "tests.e2e.dashboard_tasks"


def hidden_fields(page: str) -> list[tuple[str, str]]:
    """The hidden inputs of a page's POST form, as a browser would send them."""
    return [
        (html.unescape(name), html.unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    ]


def post_form(http: httpx.Client, path: str, fields: list[tuple[str, str]]) -> httpx.Response:
    """POST fields (a name may repeat) as a browser posts a form."""
    headers = {"content-type": "application/x-www-form-urlencoded"}
    return http.post(path, content=urlencode(fields), headers=headers)


def errors_of(db: DB, job_id: int) -> int | None:
    """How many errors a dead job has (one per run that failed); None unless it is dead."""
    rows = db.all("SELECT jsonb_array_length(errors) FROM {schema}.dead_jobs WHERE id = %s", [job_id])
    return int(rows[0][0]) if rows else None


def test_unicode_digits_in_ids_or_limit_are_a_bad_request_not_a_500(app_url: str, keys: Keys) -> None:
    # '²' and '٣' are digits to str.isdigit(); int('²') raises ValueError: it was a 500.
    http, csrf = session(app_url, keys.admin)
    with http:
        for query in ("limit=%C2%B2", "limit=%D9%A3"):
            response = http.get(f"/dashboard/dead?{query}")
            assert response.status_code == 422, (query, response.status_code)
        response = http.get("/dashboard/dead/confirm?do=retry-selected&ids=%C2%B2")
        assert response.status_code == 422
        assert "is not a job id" in response.text
        for action in ("retry", "purge"):
            response = http.post(
                f"/dashboard/dead/{action}",
                data={"csrf": csrf, "confirm": "yes", "scope": "selected", "ids": "\u00b2"},
            )
            assert response.status_code == 422, (action, response.status_code)


@pytest.mark.processes
@pytest.mark.parametrize("verb", ["retry", "purge"])
def test_a_bulk_action_by_filter_takes_only_the_jobs_its_confirmation_counted(
    verb: str,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    # The confirmation said "1 job"; a job that died while it was read was taken too (a purge
    # deleted a job nobody was shown).
    workers.start(tasks=TASKS)
    shown = enqueue_job(app_url, keys, "dash_doomed", {"n": 1})
    wait_until_sync(lambda: errors_of(db, shown) == 1, within=30)
    http, _ = session(app_url, keys.admin)
    try:
        confirm = http.get(f"/dashboard/dead/confirm?do={verb}-matching&task=dash_doomed")
        assert confirm.status_code == 200, confirm.text
        assert "1 job" in confirm.text
        later = enqueue_job(app_url, keys, "dash_doomed", {"n": 2})  # dies while the page is read
        wait_until_sync(lambda: errors_of(db, later) == 1, within=30)
        done = post_form(http, f"/dashboard/dead/{verb}", hidden_fields(confirm.text))
        assert done.status_code == 303, done.text
        assert "task=dash_doomed" in done.headers["location"]
    finally:
        http.close()
    assert errors_of(db, later) == 1  # the one that died after is still dead, untouched
    if verb == "purge":
        assert errors_of(db, shown) is None  # the one counted was deleted
    else:  # the one counted was put back: it runs (and dies) once more
        wait_until_sync(lambda: errors_of(db, shown) == 2, within=30)


@pytest.mark.processes
def test_a_retry_posted_twice_runs_the_job_once(
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    # A double click, or the same row's Retry in a second tab: the first retry ran the job,
    # it died again, and the second POST put it back to run once more.
    workers.start(tasks=TASKS)
    job_id = enqueue_job(app_url, keys, "dash_doomed", {"n": 3})
    wait_until_sync(lambda: errors_of(db, job_id) == 1, within=30)
    http, _ = session(app_url, keys.operator)
    try:
        listing = http.get("/dashboard/dead?task=dash_doomed")
        assert listing.status_code == 200
        form = re.search(
            rf'<form method="post" action="/dashboard/dead/{job_id}/retry".*?</form>', listing.text, re.S
        )
        assert form
        fields = hidden_fields(form.group(0))
        first = post_form(http, f"/dashboard/dead/{job_id}/retry", fields)
        assert first.status_code == 303
        wait_until_sync(lambda: errors_of(db, job_id) == 2, within=30)  # ran, died again
        second = post_form(http, f"/dashboard/dead/{job_id}/retry", fields)
    finally:
        http.close()
    assert second.status_code == 409, second.status_code
    assert "nothing was done" in second.text
    assert errors_of(db, job_id) == 2  # still dead of its second death: not put back again


def test_a_retry_naming_a_death_that_is_not_a_time_is_a_bad_request_not_a_500(
    app_url: str, keys: Keys
) -> None:
    http, csrf = session(app_url, keys.operator)
    try:
        for died, status in (
            ("9999-12-31T23:59:59.999999", 409),  # the last instant: no dead job died then
            ("9999-12-31T23:59:59-01:00", 422),  # past year 9999 in UTC
            ("yesterday", 422),
            ("2026-02-30T00:00", 422),
        ):
            response = http.post("/dashboard/dead/1/retry", data={"csrf": csrf, "died": died})
            assert response.status_code == status, (died, response.status_code)
    finally:
        http.close()


@pytest.mark.processes
def test_a_retry_of_selected_jobs_posted_twice_runs_each_job_once(
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    workers.start(tasks=TASKS)
    job_id = enqueue_job(app_url, keys, "dash_doomed", {"n": 4})
    wait_until_sync(lambda: errors_of(db, job_id) == 1, within=30)
    http, _ = session(app_url, keys.operator)
    try:
        confirm = http.get(f"/dashboard/dead/confirm?do=retry-selected&ids={job_id}")
        assert confirm.status_code == 200, confirm.text
        fields = hidden_fields(confirm.text)
        first = post_form(http, "/dashboard/dead/retry", fields)
        assert first.status_code == 303
        wait_until_sync(lambda: errors_of(db, job_id) == 2, within=30)  # ran, died again
        second = post_form(http, "/dashboard/dead/retry", fields)
        assert second.status_code == 303
    finally:
        http.close()
    assert errors_of(db, job_id) == 2  # still dead of its second death: not put back again


def test_another_site_cannot_sign_the_user_out(page: Page, app_url: str, keys: Keys) -> None:
    # A page of another site that posts a form to /logout: the SameSite=Strict session cookie
    # is not sent with it, so there is no session whose CSRF token to check, and /logout
    # answered by deleting the cookie all the same (the browser applies a top-level
    # navigation's Set-Cookie): any site could sign the user out.
    evil = f'<form id="f" method="post" action="{app_url}/logout"></form><script>f.submit()</script>'

    def serve_evil(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=evil)

    log_in(page, app_url, keys.operator)
    page.context.route("http://evil.test/**", serve_evil)
    attacker = page.context.new_page()
    attacker.goto("http://evil.test/")
    attacker.wait_for_url(re.compile(r"/login$"))  # the form was posted, and answered
    attacker.close()
    assert "conveyor_session" in {c["name"] for c in page.context.cookies()}
    response = page.goto(f"{app_url}/dashboard/dead")
    assert response is not None
    assert response.status == 200
    assert page.url == f"{app_url}/dashboard/dead"  # still signed in


@pytest.mark.processes
def test_a_dead_job_with_a_huge_error_does_not_make_the_list_huge(
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    # Each row held its whole last error (for "show" without htmx): 50 jobs that died of a
    # 2 MB message made a 100 MB page (and 400 MB with limit=200).
    workers.start(tasks=TASKS)
    flag = "/nonexistent/" + "x" * 500_000  # dash_flaky's error names its flag
    job_id = enqueue_job(app_url, keys, "dash_flaky", {"flag": flag})
    wait_until_sync(lambda: errors_of(db, job_id) == 1, within=30)
    http, _ = session(app_url, keys.viewer)
    try:
        listing = http.get("/dashboard/dead?task=dash_flaky")
        assert listing.status_code == 200
        assert f'data-job="{job_id}"' in listing.text
        assert len(listing.text) < 50_000, len(listing.text)
        full = http.get(f"/dashboard/dead/{job_id}/errors")  # what "show" loads: all of it
        assert full.status_code == 200
        assert flag in full.text
    finally:
        http.close()
