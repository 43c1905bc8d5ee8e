"""Review 2 of the dashboard's Jobs and Queue pages: input that must not crash a page (each
was a 500), and actions posted twice at once (two tabs, a double click), against uvicorn
serving create_app on the real database, with a real ``conveyor worker`` where a job must die."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from playwright.sync_api import Page, expect

from conveyor.dashboard.session import SESSION_COOKIE, csrf_token

from ...helpers import DB, wait_until_sync
from ..api.conftest import workers  # noqa: F401 - the API tests' worker processes
from ..api.support import Keys, Workers, bearer
from .conftest import QUEUE, enqueue_job, log_in
from .test_dashboard_jobs import WORKER_TASKS, job_state


def session(base_url: str, key: str) -> httpx.Client:
    """A signed-in session: the cookie holding the key, and the session's CSRF token."""
    return httpx.Client(
        base_url=base_url,
        cookies={SESSION_COOKIE: key},
        headers={"X-CSRF-Token": csrf_token(key)},
        follow_redirects=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00+01:00",  # before year 1 once moved to UTC: was OverflowError, a 500
        "9999-12-31T23:59-05:00",  # after 9999 once moved to UTC: was a 500 (connection reset)
    ],
)
@pytest.mark.parametrize("name", ["enqueued_after", "enqueued_before"])
def test_a_time_filter_out_of_range_once_in_utc_is_a_422_not_a_500(
    app_url: str, keys: Keys, name: str, value: str
) -> None:
    with session(app_url, keys.viewer) as http:
        response = http.get("/dashboard/jobs", params={name: value})
    assert response.status_code == 422, response.text[:500]
    assert "out of the range of dates" in response.text


@pytest.mark.parametrize(
    "field",
    [
        {"concurrency": "²"},  # str.isdigit() is true for it, int() refuses it: was a 500
        {"key_concurrency": "³"},
        {"rate": "²/1s"},  # the same in parse_rate (the API's limits too)
        {"key_rate": "¹/1m"},
        {"rate": "9" * 5000 + "/1s"},  # int() refuses over 4,300 digits: was a 500
        {"concurrency": "9" * 5000},
        {"key_rate": "0" * 30 + "99999999999/1s"},  # over the cap, leading zeros or not
    ],
)
def test_a_limit_in_superscript_digits_is_refused_with_its_message(
    app_url: str, keys: Keys, db: DB, field: dict[str, str]
) -> None:
    enqueue_job(app_url, keys, "api_add", {"a": 1, "b": 2})  # the queue exists
    with session(app_url, keys.admin) as http:
        response = http.post(f"/dashboard/queues/{QUEUE}/limits", data={"action": "set", **field})
    assert response.status_code == 422, response.text[:500]
    assert db.all("SELECT name FROM {schema}.queues WHERE limited") == []


def test_a_page_size_of_thousands_of_digits_is_the_largest_page(app_url: str, keys: Keys) -> None:
    enqueue_job(app_url, keys, "api_add", {"a": 1, "b": 2})
    with session(app_url, keys.viewer) as http:
        huge = http.get("/dashboard/jobs", params={"limit": "9" * 5000})  # was a 500 (int())
        zeros = http.get("/dashboard/jobs", params={"limit": "0000"})
        padded = http.get("/dashboard/jobs", params={"limit": "0" * 5000 + "7"})
    assert huge.status_code == 200, huge.text[:300]
    assert 'data-job="' in huge.text
    assert zeros.status_code == 422
    assert padded.status_code == 200, padded.text[:300]


def test_a_dead_job_retried_from_two_tabs_at_once_runs_once(
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    worker = workers.start(tasks=WORKER_TASKS)
    try:
        dead = enqueue_job(app_url, keys, "api_fail", {"message": "broke on purpose"})
        wait_until_sync(lambda: job_state(db, dead) == "dead", within=30)
    finally:
        worker.terminate()
        worker.communicate(timeout=15)

    def post(action: str, job_id: int) -> int:
        with session(app_url, keys.admin) as http:
            return http.post(f"/dashboard/jobs/{job_id}/{action}", data={"confirm": "yes"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: post("retry", dead), range(8)))
    assert codes.count(303) == 1, codes  # one put it back; the others were told it is not dead
    assert all(code in (303, 404, 409) for code in codes), codes
    assert job_state(db, dead) == "available"
    assert db.all("SELECT count(*) FROM {schema}.jobs WHERE id = %(id)s", {"id": dead}) == [(1,)]

    # Delete and cancel of one waiting job, racing: it ends in one place, no 500.
    waiting = enqueue_job(app_url, keys, "api_add", {"a": 1, "b": 2}, delay=3600)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: post("delete" if i % 2 else "cancel", waiting), range(8)))
    assert all(code in (303, 404, 409) for code in codes), codes
    assert codes.count(303) == 1, codes
    assert job_state(db, waiting) in (None, "cancelled")


XSS = '"><img src=x onerror="document.body.dataset.xss=1"><script>document.body.dataset.xss=2</script>'


def test_markup_stored_in_a_job_is_shown_as_text_everywhere(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    """Arguments, result, meta, error text and unique key holding markup: shown as text on the
    job page, the list and the queue page; the CSP forbids inline script besides."""
    worker = workers.start(tasks=WORKER_TASKS)
    try:
        echoed = enqueue_job(
            app_url, keys, "api_echo", {"value": {XSS: XSS}, "meta": {"m": XSS}}, unique_key=XSS[:60]
        )
        failed = enqueue_job(app_url, keys, "api_fail", {"message": XSS})
        wait_until_sync(
            lambda: job_state(db, echoed) == "completed" and job_state(db, failed) == "dead", within=30
        )
    finally:
        worker.terminate()
        worker.communicate(timeout=15)
    log_in(page, app_url, keys.admin)
    for path in (
        f"/dashboard/jobs/{echoed}",
        f"/dashboard/jobs/{failed}",
        "/dashboard/jobs",
        f"/dashboard/jobs?q={XSS[:60]}",
        f"/dashboard/queues/{QUEUE}",
    ):
        response = page.goto(app_url + path)
        assert response is not None
        assert response.status == 200, path
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
        expect(page.locator("main img, main script")).to_have_count(0)
        assert page.evaluate("document.body.dataset.xss") is None, path
    page.goto(app_url + f"/dashboard/jobs/{echoed}")
    expect(page.get_by_test_id("result")).to_contain_text("<script>document.body.dataset.xss=2</script>")
    page.goto(app_url + f"/dashboard/jobs/{failed}")
    expect(page.locator(".attempts")).to_contain_text(XSS)


def test_an_operator_cannot_forge_a_delete_or_limits(app_url: str, keys: Keys, db: DB) -> None:
    job_id = enqueue_job(app_url, keys, "api_add", {"a": 1, "b": 2}, delay=3600)
    with session(app_url, keys.operator) as http:
        assert http.get(f"/dashboard/jobs/{job_id}/delete").status_code == 403
        refused = http.post(f"/dashboard/jobs/{job_id}/delete", data={"confirm": "yes"})
        assert refused.status_code == 403, refused.text[:300]
        refused = http.post(f"/dashboard/queues/{QUEUE}/limits", data={"action": "set", "concurrency": "1"})
        assert refused.status_code == 403, refused.text[:300]
        refused = http.post(f"/dashboard/queues/{QUEUE}/limits", data={"action": "clear", "confirm": "yes"})
        assert refused.status_code == 403, refused.text[:300]
    with session(app_url, keys.admin) as http:
        http.headers.pop("X-CSRF-Token")
        wrong = http.post(
            f"/dashboard/jobs/{job_id}/delete", data={"confirm": "yes", "csrf": csrf_token(keys.operator)}
        )
        assert wrong.status_code == 403  # another session's token
    assert job_state(db, job_id) == "scheduled"
    assert db.all("SELECT name FROM {schema}.queues WHERE limited") == []


def test_a_schedules_secret_arguments_are_redacted_like_a_jobs(app_url: str, keys: Keys) -> None:
    with httpx.Client(base_url=app_url, headers=bearer(keys.admin)) as api:
        created = api.post(
            "/api/v1/schedules",
            json={
                "name": "nightly",
                "cron": "0 3 * * *",
                "task": "api_echo",
                "args": {"value": {"token": "s3cr3t"}},
            },
        )
        assert created.status_code == 201, created.text
    with session(app_url, keys.viewer) as http:
        shown = http.get("/dashboard/schedules/nightly")
    assert shown.status_code == 200, shown.text[:300]
    assert "s3cr3t" not in shown.text


def test_a_running_job_is_neither_deleted_nor_retried_and_aborts_from_many_tabs_end_it_once(
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    worker = workers.start(tasks=WORKER_TASKS)
    try:
        running = enqueue_job(app_url, keys, "api_sleep", {"seconds": 60})
        wait_until_sync(lambda: job_state(db, running) == "running", within=30)

        def post(action: str) -> int:
            with session(app_url, keys.admin) as http:
                return http.post(f"/dashboard/jobs/{running}/{action}", data={"confirm": "yes"}).status_code

        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(post, ["delete", "retry", "run-now", "delete", "retry", "run-now"]))
        assert all(code in (404, 409) for code in codes), codes
        assert job_state(db, running) == "running"

        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(post, ["abort", "cancel"] * 3))
        assert all(code in (303, 409) for code in codes), codes
        wait_until_sync(lambda: job_state(db, running) == "cancelled", within=30)
        history = db.all("SELECT count(*) FROM {schema}.job_history WHERE id = %(id)s", {"id": running})
        assert history == [(1,)]
        assert db.all("SELECT count(*) FROM {schema}.jobs WHERE id = %(id)s", {"id": running}) == [(0,)]
    finally:
        worker.terminate()
        worker.communicate(timeout=15)
