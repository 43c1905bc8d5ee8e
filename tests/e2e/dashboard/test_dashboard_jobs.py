"""The dashboard's Jobs section in a real browser (headless Chromium, Playwright) against
uvicorn serving create_app on a real database, with real ``conveyor worker`` processes: a
running job's progress moving live to its result, the list's filters and pages, redaction of
secrets in arguments and results, and the actions on one job with the roles allowed them."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from ...helpers import DB, wait_until_sync
from .. import dashboard_jobs_tasks as tasks
from ..api.conftest import workers  # noqa: F401 - the API tests' worker processes
from ..api.support import Keys, Workers, bearer
from .conftest import browser_session, enqueue_job, log_in

pytestmark = pytest.mark.processes

WORKER_TASKS = "tests.e2e.dashboard_jobs_tasks"


def job_state(db: DB, job_id: int) -> str | None:
    """The job's state wherever it is; None when no table holds it."""
    rows = db.all(
        "SELECT state::text FROM {schema}.jobs WHERE id = %(id)s"
        " UNION ALL SELECT state FROM {schema}.job_history WHERE id = %(id)s"
        " UNION ALL SELECT 'dead' FROM {schema}.dead_jobs WHERE id = %(id)s",
        {"id": job_id},
    )
    assert len(rows) <= 1, rows
    return rows[0][0] if rows else None


def listed_ids(page: Page) -> list[int]:
    return [int(i) for i in page.locator("tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")]


@pytest.fixture
def gate(tmp_path: Path) -> str:
    return str(tmp_path / "gate")


# -- (a) acceptance: a running job's progress moves live, then its result shows ---------


def test_a_running_jobs_progress_moves_live_and_its_result_shows(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
    gate: str,
) -> None:
    workers.start(tasks=WORKER_TASKS)
    job_id = enqueue_job(app_url, keys, "dash_steps", {"gate": gate, "steps": 3})
    wait_until_sync(lambda: job_state(db, job_id) == "running", within=30)

    log_in(page, app_url, keys.viewer)
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.locator("nav.sections a[aria-current=page]")).to_have_text("Jobs")
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row.locator("td.state")).to_contain_text("Running")
    row.get_by_role("link", name=str(job_id)).click()
    page.wait_for_url(re.compile(rf"/dashboard/jobs/{job_id}$"))

    state = page.get_by_test_id("job-state")
    bar = page.get_by_label("Progress")
    text = page.get_by_test_id("progress-text")
    expect(state).to_have_text("Running")
    expect(text).to_have_text("0% — waiting for step 1 of 3")
    expect(bar).to_have_attribute("value", "0")
    # A mark on the page: it stays while the progress moves, so nothing reloaded the page.
    page.evaluate("window.stillTheSamePage = true")

    Path(f"{gate}.1").touch()
    expect(text).to_have_text("33% — step 1 of 3 done", timeout=10_000)
    expect(bar).to_have_attribute("value", "33")
    Path(f"{gate}.2").touch()
    expect(text).to_have_text("66% — step 2 of 3 done", timeout=10_000)
    expect(bar).to_have_attribute("value", "66")
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.get_by_test_id("result")).to_have_count(0)

    Path(f"{gate}.3").touch()
    # It ends: the page is read again whole, with its result and its timeline's end.
    expect(state).to_have_text("✓ Completed", timeout=15_000)
    expect(page.get_by_test_id("result")).to_contain_text('"steps": 3')
    expect(page.locator(".timeline")).to_contain_text("completed")
    assert job_state(db, job_id) == "completed"
    # Ended: the live part no longer polls.
    expect(page.locator("#job-live")).not_to_have_attribute("hx-trigger", re.compile("."))


def test_operator_aborts_a_running_job_and_its_page_follows(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
    gate: str,
) -> None:
    workers.start(tasks=WORKER_TASKS)
    job_id = enqueue_job(app_url, keys, "dash_steps", {"gate": gate, "steps": 2})
    wait_until_sync(lambda: job_state(db, job_id) == "running", within=30)
    log_in(page, app_url, keys.operator)
    page.goto(app_url + f"/dashboard/jobs/{job_id}")
    expect(page.get_by_test_id("job-state")).to_have_text("Running")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)  # running: abort it
    page.get_by_role("button", name="Abort").click()
    page.wait_for_url(app_url + f"/dashboard/jobs/{job_id}")
    expect(page.get_by_role("status")).to_contain_text(f"Job {job_id}:")
    # The worker stops it; the page, polling, follows to the end.
    expect(page.get_by_test_id("job-state")).to_have_text("⊘ Cancelled", timeout=15_000)
    expect(page.locator(".attempts")).to_contain_text("abort")
    expect(page.get_by_role("button", name="Abort")).to_have_count(0)
    assert job_state(db, job_id) == "cancelled"


# -- (b) the list: pages, filters, bad filters -----------------------------------------


def test_the_list_pages_and_filters(page: Page, app_url: str, keys: Keys, db: DB) -> None:
    in_api = [enqueue_job(app_url, keys, "api_add", {"a": i, "b": 1}) for i in range(4)]
    in_other = [enqueue_job(app_url, keys, "dash_other", {"n": i}) for i in range(3)]
    everything = sorted(in_api + in_other, reverse=True)
    cancelled = in_api[1]
    with httpx.Client(base_url=app_url, headers=bearer(keys.admin)) as http:
        assert http.post(f"/api/v1/jobs/{cancelled}/cancel", json={}).status_code == 200

    log_in(page, app_url, keys.viewer)
    page.goto(app_url + "/dashboard/jobs?limit=3")
    expect(page.locator("tr[data-job]")).to_have_count(3)
    assert listed_ids(page) == everything[:3]
    expect(page.get_by_role("link", name="First page")).to_have_count(0)
    page.get_by_role("link", name="Next page").click()
    expect(page.locator("tr[data-job]")).to_have_count(3)
    assert listed_ids(page) == everything[3:6]
    page.get_by_role("link", name="Next page").click()
    expect(page.locator("tr[data-job]")).to_have_count(1)
    assert listed_ids(page) == everything[6:]
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    page.get_by_role("link", name="First page").click()
    assert listed_ids(page) == everything[:3]
    assert "limit=3" in page.url
    assert "cursor" not in page.url

    # The states are written out, the cancelled one too.
    page.goto(app_url + "/dashboard/jobs")
    expect(page.locator(f'tr[data-job="{cancelled}"] td.state')).to_have_text("⊘ Cancelled")
    expect(page.locator(f'tr[data-job="{in_api[0]}"] td.state')).to_have_text("Waiting")

    # The form: a queue, then a queue and a state; pages keep the filters.
    page.get_by_label("Queue", exact=True).select_option(tasks.OTHER_QUEUE)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"queue=dash-other"))
    expect(page.locator("tr[data-job]")).to_have_count(3)
    assert listed_ids(page) == sorted(in_other, reverse=True)
    page.goto(app_url + f"/dashboard/jobs?queue={tasks.QUEUE}&limit=2")
    assert listed_ids(page) == sorted(in_api, reverse=True)[:2]
    page.get_by_role("link", name="Next page").click()
    assert listed_ids(page) == sorted(in_api, reverse=True)[2:]
    expect(page.get_by_label("Queue", exact=True)).to_have_value(tasks.QUEUE)

    page.goto(app_url + "/dashboard/jobs")
    page.get_by_label("Queue", exact=True).select_option(tasks.QUEUE)
    page.get_by_label("State", exact=True).select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"state=cancelled"))
    assert listed_ids(page) == [cancelled]

    # An id: the jobs whose id starts with the digits.
    target = in_other[1]
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Job id or unique key").fill(str(target))
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(rf"q={target}"))
    ids = listed_ids(page)
    assert target in ids, ids
    assert all(str(i).startswith(str(target)) for i in ids), ids

    # Bad filters: the page with a message, never a 500.
    for query, status, message in [
        ("queue=no-such-queue", 404, "no queue named 'no-such-queue'"),
        ("state=sleeping", 422, "unknown state 'sleeping'"),
        ("enqueued_after=yesterday", 422, "is not a date and time"),
        ("enqueued_after=2026-12-07T10:00&enqueued_before=2026-12-07T09:00", 422, "must be earlier"),
        ("cursor=garbage", 422, "the cursor is not valid"),
        ("limit=many", 422, "limit"),
    ]:
        response = page.goto(app_url + "/dashboard/jobs?" + query)
        assert response is not None
        assert response.status == status, (query, response.status)
        expect(page.get_by_test_id("filter-error")).to_contain_text(message)
        expect(page.get_by_role("button", name="Filter")).to_be_visible()

    # A time range, in UTC: every job was enqueued after 2000 and before 2100.
    page.goto(app_url + "/dashboard/jobs?enqueued_after=2000-01-01T00:00&enqueued_before=2100-01-01T00:00")
    expect(page.locator("tr[data-job]")).to_have_count(7)
    page.goto(app_url + "/dashboard/jobs?enqueued_before=2000-01-01T00:00")
    expect(page.get_by_test_id("no-jobs")).to_be_visible()
    # A page size above the cap is capped, not refused.
    response = page.goto(app_url + "/dashboard/jobs?limit=100000")
    assert response is not None
    assert response.status == 200
    expect(page.locator("tr[data-job]")).to_have_count(7)

    # On a phone: the page does not scroll sideways (the table scrolls in its own box).
    page.set_viewport_size({"width": 390, "height": 800})
    for path in ("/dashboard/jobs", f"/dashboard/jobs/{in_api[0]}"):
        page.goto(app_url + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    page.set_viewport_size({"width": 1280, "height": 800})

    # An unknown job: a 404 page.
    response = page.goto(app_url + "/dashboard/jobs/987654321")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("no job with id 987654321")
    response = page.goto(app_url + f"/dashboard/jobs/{2**64}")
    assert response is not None
    assert response.status == 404


# -- (c) redaction ---------------------------------------------------------------------

SECRETS = ("hunter2-pw-8812", "tok-XYZ-4471", "k-999-3310", "Bearer sek-5521")


def test_named_fields_are_redacted_in_arguments_and_result(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    value = {
        "user": "ada",
        "password": SECRETS[0],
        "nested": {"Token": SECRETS[1], "items": [{"API_KEY": SECRETS[2], "kept": "visible-7"}]},
        "headers": {"Authorization": SECRETS[3]},
    }
    workers.start(tasks=WORKER_TASKS)
    job_id = enqueue_job(app_url, keys, "api_echo", {"value": value})
    wait_until_sync(lambda: job_state(db, job_id) == "completed", within=30)

    log_in(page, app_url, keys.admin)
    page.goto(app_url + f"/dashboard/jobs/{job_id}")
    args = page.get_by_test_id("args")
    result = page.get_by_test_id("result")
    expect(args).to_contain_text('"password": "[redacted]"')
    expect(args).to_contain_text('"Token": "[redacted]"')
    expect(args).to_contain_text('"API_KEY": "[redacted]"')
    expect(args).to_contain_text('"Authorization": "[redacted]"')
    expect(args).to_contain_text('"kept": "visible-7"')
    expect(args).to_contain_text('"user": "ada"')
    expect(result).to_contain_text('"password": "[redacted]"')
    expect(result).to_contain_text('"kept": "visible-7"')
    html = page.content()
    http, _ = browser_session(page, app_url)
    with http:
        live = http.get(f"/dashboard/jobs/{job_id}/live").text
    for secret in SECRETS:
        assert secret not in html
        assert secret not in live
    # The database holds them: the page hid them.
    assert SECRETS[0] in str(db.one("SELECT args FROM {schema}.job_history WHERE id = %s", [job_id]))


# -- (d) actions and roles -------------------------------------------------------------


def test_operator_cancels_a_scheduled_job_and_retries_a_dead_one(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    worker = workers.start(tasks=WORKER_TASKS)
    dead = enqueue_job(app_url, keys, "api_fail", {"message": "broke on purpose"})
    wait_until_sync(lambda: job_state(db, dead) == "dead", within=30)
    worker.terminate()
    worker.communicate(timeout=15)
    scheduled = enqueue_job(app_url, keys, "api_add", {"a": 1, "b": 2}, delay=3600)
    assert job_state(db, scheduled) == "scheduled"

    log_in(page, app_url, keys.operator)
    page.goto(app_url + f"/dashboard/jobs/{scheduled}")
    expect(page.get_by_test_id("job-state")).to_have_text("Scheduled")
    expect(page.get_by_role("button", name="Run now")).to_be_visible()
    expect(page.get_by_role("link", name="Delete…")).to_have_count(0)  # an admin's
    expect(page.get_by_role("button", name="Abort")).to_have_count(0)  # not running
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(app_url + f"/dashboard/jobs/{scheduled}")
    expect(page.get_by_role("status")).to_have_text(f"Job {scheduled}: cancelled.")
    expect(page.get_by_test_id("job-state")).to_have_text("⊘ Cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    assert job_state(db, scheduled) == "cancelled"
    expect(page.locator(".attempts")).to_contain_text("test-operator")  # who cancelled it

    page.goto(app_url + f"/dashboard/jobs/{dead}")
    expect(page.get_by_test_id("job-state")).to_have_text("✗ Dead")
    expect(page.locator(".attempts")).to_contain_text("broke on purpose")
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(app_url + f"/dashboard/jobs/{dead}")
    expect(page.get_by_role("status")).to_have_text(f"Job {dead} put back to run again.")
    expect(page.get_by_test_id("job-state")).to_have_text("Waiting")
    assert job_state(db, dead) == "available"

    later = enqueue_job(app_url, keys, "api_add", {"a": 2, "b": 3}, delay=3600)
    page.goto(app_url + f"/dashboard/jobs/{later}")
    page.get_by_role("button", name="Run now").click()
    page.wait_for_url(app_url + f"/dashboard/jobs/{later}")
    expect(page.get_by_role("status")).to_have_text(f"Job {later} is due now.")
    expect(page.get_by_test_id("job-state")).to_have_text("Waiting")
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)
    assert job_state(db, later) == "available"

    # A job that has ended cannot be cancelled: a page that is out of date gets the reason.
    http, csrf = browser_session(page, app_url)
    with http:
        page.goto(app_url + f"/dashboard/jobs/{scheduled}")
        refused = http.post(f"/dashboard/jobs/{scheduled}/cancel", data={"csrf": csrf})
    assert refused.status_code == 409, refused.text
    assert "has already ended" in refused.text


def test_admin_deletes_only_with_confirmation(page: Page, app_url: str, keys: Keys, db: DB) -> None:
    job_id = enqueue_job(app_url, keys, "api_add", {"a": 1, "b": 2}, delay=3600)
    log_in(page, app_url, keys.admin)
    page.goto(app_url + f"/dashboard/jobs/{job_id}")

    # Without the confirm field the server refuses, whatever the page showed.
    http, csrf = browser_session(page, app_url)
    with http:
        refused = http.post(f"/dashboard/jobs/{job_id}/delete", data={"csrf": csrf})
        assert refused.status_code in (400, 422), refused.text
        assert "needs its confirmation" in refused.text
        assert job_state(db, job_id) == "scheduled"
        unknown = http.post(f"/dashboard/jobs/{job_id}/explode", data={"csrf": csrf})
        assert unknown.status_code == 404

    page.get_by_role("link", name="Delete…").click()
    page.wait_for_url(app_url + f"/dashboard/jobs/{job_id}/delete")
    expect(page.get_by_role("heading", name=f"Delete job {job_id}?")).to_be_visible()
    page.get_by_role("button", name=f"Delete job {job_id}").click()
    page.wait_for_url(app_url + "/dashboard/jobs")
    expect(page.get_by_role("status")).to_have_text(f"Job {job_id} deleted.")
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_have_count(0)
    assert job_state(db, job_id) is None
    response = page.goto(app_url + f"/dashboard/jobs/{job_id}")
    assert response is not None
    assert response.status == 404
    # A page still polling the deleted job is told to reload (and so shows the 404).
    http, csrf = browser_session(page, app_url)
    with http:
        gone = http.get(f"/dashboard/jobs/{job_id}/live?state=scheduled")
    assert gone.headers.get("HX-Refresh") == "true"


def test_a_viewer_sees_no_actions_and_forged_posts_are_refused(
    page: Page, app_url: str, keys: Keys, db: DB
) -> None:
    job_id = enqueue_job(app_url, keys, "api_add", {"a": 1, "b": 2}, delay=3600)
    log_in(page, app_url, keys.viewer)
    page.goto(app_url + f"/dashboard/jobs/{job_id}")
    expect(page.get_by_test_id("job-state")).to_have_text("Scheduled")
    expect(page.get_by_role("heading", name="Actions")).to_have_count(0)
    expect(page.locator("main").get_by_role("button")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete…")).to_have_count(0)

    http, csrf = browser_session(page, app_url)  # the viewer's own, valid token (the logout form's)
    with http:
        assert http.get(f"/dashboard/jobs/{job_id}/delete").status_code == 403  # no confirmation page
        for action, form in [
            ("cancel", {}),
            ("run-now", {}),
            ("abort", {}),
            ("delete", {"confirm": "yes"}),
        ]:
            refused = http.post(f"/dashboard/jobs/{job_id}/{action}", data={"csrf": csrf, **form})
            assert refused.status_code == 403, (action, refused.status_code, refused.text)
            assert "role" in refused.text
        # Without the CSRF token: refused before anything is looked at.
        assert http.post(f"/dashboard/jobs/{job_id}/cancel", data={}).status_code == 403
    assert job_state(db, job_id) == "scheduled"
    assert db.one("SELECT errors FROM {schema}.jobs WHERE id = %s", [job_id]) in (None, [])
