"""The dashboard's dead letters in a real browser (headless Chromium, Playwright) against
uvicorn serving create_app on a real database, with real ``conveyor worker`` processes killing
and running the jobs: a dead job retried from its row and run to completion; retrying the
selected jobs and every job matching a filter, and purging, each through its confirmation
page; bulk POSTs without ``confirm`` refused; keyset pages keeping the filter; bad filters
answered 4xx; a viewer's page without buttons and its forged POSTs refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from ...helpers import DB, wait_until_sync
from ..api.conftest import workers  # noqa: F401 - the API tests' worker processes
from ..api.support import Keys, Workers
from .conftest import browser_session, enqueue_job, log_in

pytestmark = pytest.mark.processes

TASKS = "tests.e2e.dashboard_tasks"


def dead_ids(db: DB) -> set[int]:
    return {row[0] for row in db.all("SELECT id FROM {schema}.dead_jobs")}


def wait_dead(db: DB, ids: list[int]) -> None:
    wait_until_sync(lambda: set(ids) <= dead_ids(db), within=30)


def live_state(db: DB, job_id: int) -> str | None:
    rows = db.all("SELECT state::text FROM {schema}.jobs WHERE id = %s", [job_id])
    return str(rows[0][0]) if rows else None


def history_state(db: DB, job_id: int) -> str | None:
    rows = db.all("SELECT state::text FROM {schema}.job_history WHERE id = %s", [job_id])
    return str(rows[0][0]) if rows else None


def row(page: Page, job_id: int) -> Any:
    return page.locator(f'tr[data-job="{job_id}"]')


def test_a_dead_job_is_listed_with_its_error_and_retried_to_completion(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    flag = tmp_path / "flag"
    workers.start(tasks=TASKS)
    job_id = enqueue_job(app_url, keys, "dash_flaky", {"flag": str(flag)})
    wait_dead(db, [job_id])

    log_in(page, app_url, keys.operator)
    page.get_by_role("link", name="Dead letters").click()
    page.wait_for_url(app_url + "/dashboard/dead")
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    expect(page.get_by_role("link", name="Dead letters")).to_have_attribute("aria-current", "page")
    expect(row(page, job_id)).to_contain_text("dash_flaky")
    expect(row(page, job_id)).to_contain_text("1 / 1")
    expect(row(page, job_id).locator(".excerpt")).to_contain_text("is not set yet")

    # "show" loads every error of the job, with its traceback.
    row(page, job_id).get_by_text("show").click()
    expect(page.get_by_test_id(f"errors-{job_id}")).to_contain_text("Traceback")
    expect(page.get_by_test_id(f"errors-{job_id}")).to_contain_text("RuntimeError")

    flag.touch()
    page.get_by_role("button", name=f"Retry job {job_id}").click()
    page.wait_for_url(app_url + "/dashboard/dead")
    expect(page.get_by_role("status")).to_contain_text(f"Retried job {job_id}")
    # The worker runs it again, and this time it completes.
    wait_until_sync(lambda: history_state(db, job_id) == "completed", within=30)
    assert job_id not in dead_ids(db)
    page.reload()
    expect(row(page, job_id)).to_have_count(0)
    expect(page.get_by_test_id("no-dead")).to_be_visible()


def test_bulk_retry_and_purge_go_through_a_confirmation_and_keep_the_filter(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker = workers.start(tasks=TASKS)
    flaky = [enqueue_job(app_url, keys, "dash_flaky", {"flag": str(tmp_path / "never")}) for _ in range(3)]
    doomed = [enqueue_job(app_url, keys, "dash_doomed", {"n": n}) for n in range(3)]
    wait_dead(db, flaky + doomed)
    # No worker from here on: a retried job stays waiting, where the test can see it.
    worker.terminate()
    worker.communicate(timeout=30)

    log_in(page, app_url, keys.admin)
    page.goto(app_url + "/dashboard/dead")
    expect(page.locator("tr[data-job]")).to_have_count(6)

    # Retry the selected: 2 of the 3 flaky jobs.
    for job_id in flaky[:2]:
        page.get_by_label(f"Select job {job_id}").check()
    page.get_by_role("button", name="Retry selected").click()
    expect(page.get_by_role("heading", name="Retry 2 jobs?")).to_be_visible()
    page.get_by_role("button", name="Yes, retry 2 jobs").click()
    page.wait_for_url(app_url + "/dashboard/dead")
    expect(page.get_by_role("status")).to_have_text("Retried 2 jobs.")
    assert [live_state(db, job_id) for job_id in flaky] == ["available", "available", None]
    assert dead_ids(db) == {flaky[2], *doomed}
    expect(page.locator("tr[data-job]")).to_have_count(4)

    # The filter (a task), its pages (2 rows a page) keep it.
    page.get_by_label("Task").fill("dash_doomed")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url(re.compile(r"task=dash_doomed"))
    expect(page.locator("tr[data-job]")).to_have_count(3)
    page.goto(app_url + "/dashboard/dead?task=dash_doomed&limit=2")
    first = [int(v) for v in page.locator("tr[data-job]").evaluate_all("rs => rs.map(r => r.dataset.job)")]
    newest_first = [
        r[0]
        for r in db.all(
            "SELECT id FROM {schema}.dead_jobs WHERE task = 'dash_doomed' ORDER BY died_at DESC, id DESC"
        )
    ]
    assert first == newest_first[:2]
    page.get_by_role("link", name="Next page").click()
    page.wait_for_url(re.compile(r"cursor="))
    assert "task=dash_doomed" in page.url
    assert "limit=2" in page.url
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(row(page, newest_first[2])).to_be_visible()
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    page.get_by_role("link", name="First page").click()
    expect(page.locator("tr[data-job]")).to_have_count(2)

    # Without the confirmation's `confirm`, a bulk POST is refused and changes nothing.
    http, csrf = browser_session(page, app_url)
    with http:
        for action in ("retry", "purge"):
            refused = http.post(
                f"/dashboard/dead/{action}", data={"csrf": csrf, "scope": "matching", "task": "dash_doomed"}
            )
            assert refused.status_code == 422, refused.text
            assert "not confirmed" in refused.text
        refused = http.post(
            "/dashboard/dead/purge", data={"csrf": csrf, "scope": "selected", "ids": str(doomed[0])}
        )
        assert refused.status_code == 422, refused.text
    assert dead_ids(db) == {flaky[2], *doomed}

    # Retry every job matching a filter: the last flaky one.
    page.goto(app_url + "/dashboard/dead?task=dash_flaky")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    page.get_by_role("button", name="Retry all matching the filter").click()
    expect(page.get_by_role("heading", name="Retry 1 job?")).to_be_visible()
    expect(page.get_by_text("Filter: task dash_flaky")).to_be_visible()
    page.get_by_role("button", name="Yes, retry 1 job").click()
    page.wait_for_url(app_url + "/dashboard/dead?task=dash_flaky")
    expect(page.get_by_role("status")).to_have_text("Retried 1 job.")
    assert live_state(db, flaky[2]) == "available"
    assert dead_ids(db) == set(doomed)

    # Purge the selected one, then every job matching the filter; each confirmed.
    page.goto(app_url + "/dashboard/dead?task=dash_doomed")
    page.get_by_label(f"Select job {doomed[0]}").check()
    page.get_by_role("button", name="Purge selected").click()
    expect(page.get_by_role("heading", name="Purge 1 job?")).to_be_visible()
    expect(page.get_by_test_id("confirm-count")).to_contain_text("cannot be undone")
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(app_url + "/dashboard/dead?task=dash_doomed")
    assert dead_ids(db) == set(doomed)  # the cancel did nothing
    page.get_by_label(f"Select job {doomed[0]}").check()
    page.get_by_role("button", name="Purge selected").click()
    page.get_by_role("button", name="Yes, purge 1 job").click()
    expect(page.get_by_role("status")).to_have_text("Purged 1 job from the dead letters.")
    assert dead_ids(db) == set(doomed[1:])

    page.get_by_role("button", name="Purge all matching the filter").click()
    expect(page.get_by_role("heading", name="Purge 2 jobs?")).to_be_visible()
    page.get_by_role("button", name="Yes, purge 2 jobs").click()
    page.wait_for_url(app_url + "/dashboard/dead?task=dash_doomed")
    expect(page.get_by_role("status")).to_have_text("Purged 2 jobs from the dead letters.")
    expect(page.get_by_test_id("no-dead")).to_be_visible()
    assert dead_ids(db) == set()
    assert db.one("SELECT count(*) FROM {schema}.job_history WHERE id = ANY(%s)", [doomed]) == 0


def test_bad_filters_are_answered_4xx_with_a_message(page: Page, app_url: str, keys: Keys) -> None:
    log_in(page, app_url, keys.viewer)
    for query, status, message in (
        ("died_after=yesterday", 422, "is not a time"),
        ("died_after=2026-12-07T10:00&died_before=2026-12-07T09:00", 422, "must be earlier"),
        ("queue=nowhere", 422, "no queue named 'nowhere'"),
        ("cursor=garbage", 422, "cursor is not valid"),
        ("limit=0", 422, "limit must be"),
        ("died_before=9999-12-31T23:00-05:00", 422, "is not a time"),
        ("task=a%00b", 422, "task cannot be stored"),
        ("queue=no%20such%00queue", 422, "is not allowed"),
    ):
        response = page.goto(f"{app_url}/dashboard/dead?{query}")
        assert response is not None
        assert response.status == status, (query, response.status)
        expect(page.get_by_test_id("filter-error")).to_contain_text(message)
        expect(page.get_by_label("Task")).to_be_visible()  # the form is there to fix it
    for query in ("do=purge-matching&queue=no%00queue", "do=retry-matching&died_after=never", "do=nothing"):
        response = page.goto(f"{app_url}/dashboard/dead/confirm?{query}")
        assert response is not None
        assert response.status == 422, (query, response.status)
    response = page.goto(f"{app_url}/dashboard/dead/confirm?do=retry-selected&ids=12x")
    assert response is not None
    assert response.status == 422
    expect(page.get_by_role("alert")).to_contain_text("'12x' is not a job id")
    response = page.goto(f"{app_url}/dashboard/dead/confirm?do=retry-selected")
    assert response is not None
    assert response.status == 422
    expect(page.get_by_role("alert")).to_contain_text("no job selected")


def test_a_viewer_sees_no_buttons_and_its_forged_posts_are_refused(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    workers.start(tasks=TASKS)
    job_id = enqueue_job(app_url, keys, "dash_doomed", {})
    wait_dead(db, [job_id])

    log_in(page, app_url, keys.viewer)
    page.goto(app_url + "/dashboard/dead")
    expect(row(page, job_id)).to_contain_text("doomed job 0")
    expect(page.get_by_role("button", name=re.compile(r"Retry|Purge"))).to_have_count(0)
    expect(page.get_by_role("checkbox")).to_have_count(0)

    http, csrf = browser_session(page, app_url)
    with http:
        one = http.post(f"/dashboard/dead/{job_id}/retry", data={"csrf": csrf})
        assert one.status_code == 403, one.text
        assert "needs the operator role" in one.text
        many = http.post(
            "/dashboard/dead/retry",
            data={"csrf": csrf, "confirm": "yes", "scope": "selected", "ids": str(job_id)},
        )
        assert many.status_code == 403, many.text
        purge = http.post("/dashboard/dead/purge", data={"csrf": csrf, "confirm": "yes", "scope": "matching"})
        assert purge.status_code == 403, purge.text
        assert "needs the admin role" in purge.text
    assert dead_ids(db) == {job_id}
    assert live_state(db, job_id) is None


def test_an_operator_retries_but_cannot_purge(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    workers.start(tasks=TASKS)
    job_id = enqueue_job(app_url, keys, "dash_doomed", {})
    wait_dead(db, [job_id])

    log_in(page, app_url, keys.operator)
    page.goto(app_url + "/dashboard/dead")
    expect(page.get_by_role("button", name=f"Retry job {job_id}")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Purge"))).to_have_count(0)
    http, csrf = browser_session(page, app_url)
    with http:
        purge = http.post(
            "/dashboard/dead/purge",
            data={"csrf": csrf, "confirm": "yes", "scope": "selected", "ids": str(job_id)},
        )
        assert purge.status_code == 403, purge.text
        assert "needs the admin role" in purge.text
        # A job that is not dead (any more): 404, as its errors.
        gone = http.post("/dashboard/dead/987654/retry", data={"csrf": csrf})
        assert gone.status_code == 404, gone.text
        assert "no dead job with id 987654" in gone.text
        assert http.get("/dashboard/dead/987654/errors").status_code == 404
        # And no CSRF token: refused before anything.
        forged = http.post(f"/dashboard/dead/{job_id}/retry", data={})
        assert forged.status_code == 403, forged.text
    assert dead_ids(db) == {job_id}


def test_dead_letters_and_workers_fit_a_phone_in_the_dark(
    browser: Browser,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    workers.start(tasks=TASKS)
    dead = enqueue_job(app_url, keys, "dash_doomed", {})
    wait_dead(db, [dead])
    running = enqueue_job(app_url, keys, "dash_block", {"flag": str(tmp_path / "release")})
    wait_until_sync(lambda: live_state(db, running) == "running", within=30)
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, app_url, keys.admin)
        page.goto(app_url + "/dashboard/dead")
        expect(row(page, dead)).to_be_visible()
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 18, 22)"
        # Nothing is wider than the phone: the table scrolls inside its own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.goto(app_url + "/dashboard/workers")
        expect(page.locator(f'[data-job="{running}"]')).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(app_url + "/dashboard/dead")
        row(page, dead).get_by_text("show").click()
        expect(page.get_by_test_id(f"errors-{dead}")).to_contain_text("Traceback")
    finally:
        (tmp_path / "release").touch()
        context.close()
