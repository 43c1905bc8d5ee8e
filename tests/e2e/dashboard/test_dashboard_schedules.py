"""The dashboard's Schedules section in a real browser (headless Chromium, Playwright) against
uvicorn serving create_app on a real database, with a real ``conveyor scheduler`` process and
a real ``conveyor worker`` process where a flow needs them: run a schedule now and see its
fire and its job complete; refused forms (zone, cron, arguments) kept as typed with the
message at the field and nothing created; a preview of the next five fires; pause, resume,
change; a viewer's page without buttons and its forged POSTs refused; removal only with its
confirmation."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from conveyor.cron import Cron

from ...helpers import DB, REPO, subprocess_env, wait_until_sync
from ..api.conftest import workers  # noqa: F401 - a fixture shared with the API's tests
from ..api.support import Keys, Workers, bearer
from .conftest import log_in, make_schedule

pytestmark = pytest.mark.processes

Scheduler = Callable[[], subprocess.Popen[str]]


@pytest.fixture
def scheduler(database_url: str, schema: str) -> Iterator[Scheduler]:
    """``scheduler()``: a ``conveyor scheduler`` process (ticking every 0.3 s), stopped after
    the test."""
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "scheduler",
                "--tasks",
                "tests.e2e.api_tasks",
                "--tick",
                "0.3",
                "--lease",
                "3",
            ],
            cwd=REPO,
            env=subprocess_env(database_url, schema),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


def schedule_row(db: DB, name: str = "nightly") -> tuple[Any, ...] | None:
    rows = db.all(
        "SELECT cron, timezone, paused, args, next_fire_at FROM {schema}.schedules WHERE name = %s", [name]
    )
    return rows[0] if rows else None


def schedule_count(db: DB) -> int:
    return int(db.one("SELECT count(*) FROM {schema}.schedules"))


def row(page: Page, name: str = "nightly") -> Locator:
    return page.locator(f'tr[data-schedule="{name}"]')


def new_context(browser: Browser, **options: Any) -> tuple[BrowserContext, Page]:
    context = browser.new_context(**({"viewport": {"width": 1280, "height": 800}} | options))
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    return context, opened


def posted(page: Page, click: Callable[[], None]) -> int:
    """Click something that submits a form; the status of the POST's answer."""
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        click()
    return answer.value.status


def session_of(page: Page) -> tuple[dict[str, str], str]:
    """The page's session cookie and the CSRF token its page holds."""
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    return {c["name"]: c["value"] for c in page.context.cookies()}, csrf


# -- (a) run now: the fire, the job, the worker -------------------------------------------


def test_run_now_shows_the_fire_and_the_worker_completes_its_job(
    browser: Browser,
    app_url: str,
    keys: Keys,
    db: DB,
    scheduler: Scheduler,
    workers: Workers,  # noqa: F811
) -> None:
    # A job that takes 3 s: its page sees it waiting or running, then completed.
    make_schedule(app_url, keys, task="api_sleep", args={"seconds": 3})
    scheduler()
    # The scheduler computes the next fire itself (no longer an estimate).
    wait_until_sync(lambda: (found := schedule_row(db)) is not None and found[4] is not None, within=30)
    workers.start()
    next_fire: datetime = schedule_row(db)[4]  # type: ignore[index]
    assert next_fire == Cron("0 9 * * *", "Europe/Paris").next_after(datetime.now(UTC))

    context, page = new_context(browser, timezone_id="Asia/Tokyo", locale="en-GB")
    try:
        log_in(page, app_url, keys.operator)
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Schedules").click()
        page.wait_for_url(app_url + "/dashboard/schedules")
        expect(page.get_by_role("link", name="Schedules")).to_have_attribute("aria-current", "page")
        listed = row(page)
        expect(listed).to_contain_text("api_sleep")
        expect(listed).to_contain_text("0 9 * * *")
        expect(listed).to_contain_text("Europe/Paris")
        expect(listed.locator('[data-state="active"]')).to_have_text("▶ Active")
        # Its zone's wall clock, and the viewer's (Tokyo, filled in by the page's script).
        paris = next_fire.astimezone(ZoneInfo("Europe/Paris"))
        tokyo = next_fire.astimezone(ZoneInfo("Asia/Tokyo"))
        expect(listed.locator('[data-next="zone"]')).to_have_text(paris.strftime("%Y-%m-%d 09:00 %Z"))
        viewer = listed.locator('[data-next="viewer"] time')
        expect(viewer).to_contain_text(tokyo.strftime("%d/%m/%Y, %H:%M"))
        expect(viewer).to_contain_text("GMT+9")
        expect(viewer).to_have_attribute("datetime", next_fire.strftime("%Y-%m-%dT%H:%M:%SZ"))
        # No New schedule link for an operator (creating needs an admin).
        expect(page.get_by_role("link", name="New schedule")).to_have_count(0)

        page.get_by_role("link", name="nightly").click()
        page.wait_for_url(app_url + "/dashboard/schedules/nightly")
        expect(page.get_by_text("It has not fired yet.")).to_be_visible()
        expect(page.get_by_role("button", name="Save changes")).to_have_count(0)
        assert posted(page, page.get_by_role("button", name="Run schedule nightly now").click) == 303
        page.wait_for_url(app_url + "/dashboard/schedules/nightly")
        notice = page.get_by_role("status")
        expect(notice).to_contain_text("Schedule nightly triggered: job ")
        match = re.search(r"job (\d+) enqueued", notice.inner_text())
        assert match is not None
        job_id = int(match.group(1))

        fire = page.locator(f'tr[data-fire][data-job="{job_id}"]')
        expect(fire).to_contain_text("manual (run now)")
        expect(fire).to_contain_text(f"#{job_id}")
        # The worker runs it; the fires table (polled) shows the outcome without a reload.
        expect(fire.locator("[data-outcome]")).to_have_text(re.compile("^(available|running)$"))
        expect(fire.locator("[data-outcome]")).to_have_text("completed", timeout=20_000)
        # Rows the polling swaps in have their times written in the viewer's zone too.
        page.evaluate(
            "() => new Promise(done => document.body.addEventListener('htmx:afterSettle', done, {once: true}))"
        )
        expect(fire.locator("time")).to_contain_text("GMT+9")
    finally:
        context.close()
    with httpx.Client(base_url=app_url, headers=bearer(keys.admin)) as http:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
    assert (job["state"], job["result"], job["task"]) == ("completed", "slept", "api_sleep")
    fires = db.all("SELECT kind, job_id FROM {schema}.schedule_fires WHERE schedule = 'nightly'")
    assert fires == [("manual", job_id)]


# -- (b) refused forms, a preview, then created --------------------------------------------


def test_a_refused_form_keeps_its_input_and_names_the_field_then_a_good_one_is_created(
    page: Page, app_url: str, keys: Keys, db: DB
) -> None:
    log_in(page, app_url, keys.admin)
    page.goto(app_url + "/dashboard/schedules")
    expect(page.get_by_text("No schedules yet.")).to_be_visible()
    page.get_by_role("link", name="New schedule").click()
    page.wait_for_url(app_url + "/dashboard/new-schedule")

    page.get_by_label("Name").fill("report")
    page.get_by_label("Task").fill("api_add")
    page.get_by_label("Cron expression").fill("30 8 * * 1-5")
    page.get_by_label("Time zone").fill("Mars/Olympus")
    page.get_by_label("Arguments (JSON object)").fill('{"a": 1, "b": 2}')
    page.get_by_label("Priority").select_option("high")
    assert posted(page, page.get_by_role("button", name="Create schedule").click) == 422
    expect(page.locator("#timezone-error")).to_contain_text("unknown time zone 'Mars/Olympus'")
    expect(page.get_by_label("Time zone")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error")).to_have_count(1)
    # What was typed is kept.
    expect(page.get_by_label("Name")).to_have_value("report")
    expect(page.get_by_label("Cron expression")).to_have_value("30 8 * * 1-5")
    expect(page.get_by_label("Time zone")).to_have_value("Mars/Olympus")
    expect(page.get_by_label("Arguments (JSON object)")).to_have_value('{"a": 1, "b": 2}')
    expect(page.get_by_label("Priority")).to_have_value("high")
    assert schedule_count(db) == 0

    # A wrong cron expression (and the zone still wrong): both named, each at its field.
    page.get_by_label("Cron expression").fill("30 25 * * 1-5")
    assert posted(page, page.get_by_role("button", name="Create schedule").click) == 422
    expect(page.locator("#cron-error")).to_contain_text("hour value 25 is out of range 0-23")
    expect(page.locator("#timezone-error")).to_be_visible()
    page.get_by_label("Time zone").fill("America/New_York")
    assert posted(page, page.get_by_role("button", name="Create schedule").click) == 422
    expect(page.locator("#cron-error")).to_contain_text("hour value 25")
    expect(page.locator("#timezone-error")).to_have_count(0)
    assert schedule_count(db) == 0

    # Arguments: not JSON; then JSON the task refuses (checked by the service layer).
    page.get_by_label("Cron expression").fill("30 8 * * 1-5")
    page.get_by_label("Arguments (JSON object)").fill("{a: 1")
    assert posted(page, page.get_by_role("button", name="Create schedule").click) == 422
    expect(page.locator("#args-error")).to_contain_text("not valid JSON")
    page.get_by_label("Arguments (JSON object)").fill('{"a": 1}')
    assert posted(page, page.get_by_role("button", name="Create schedule").click) == 422
    expect(page.locator("#args-error")).to_contain_text("missing required argument")
    expect(page.locator("#cron-error")).to_have_count(0)
    assert schedule_count(db) == 0

    # A right one: the preview first (nothing saved), then created.
    page.get_by_label("Arguments (JSON object)").fill('{"a": 1, "b": 2}')
    cron = Cron("30 8 * * 1-5", "America/New_York")
    assert posted(page, page.get_by_role("button", name="Preview next fires").click) == 200
    expected = preview_texts(cron)
    preview = page.get_by_test_id("preview")
    expect(preview).to_contain_text("Next five fires (not saved yet)")
    expect(preview.locator("li")).to_have_count(5)
    for item, text in zip(preview.locator("li").all(), expected, strict=True):
        expect(item).to_contain_text(text)
    assert schedule_count(db) == 0

    assert posted(page, page.get_by_role("button", name="Create schedule").click) == 303
    page.wait_for_url(app_url + "/dashboard/schedules/report")
    expect(page.get_by_role("status")).to_have_text("Schedule report created.")
    preview = page.get_by_test_id("preview")
    expect(preview.get_by_role("heading")).to_have_text("Next five fires")
    expect(preview.locator("li")).to_have_count(5)
    for item, text in zip(preview.locator("li").all(), preview_texts(cron), strict=True):
        expect(item).to_contain_text(text)
    stored = db.all("SELECT cron, timezone, task, args, priority, paused FROM {schema}.schedules")
    assert stored == [("30 8 * * 1-5", "America/New_York", "api_add", {"a": 1, "b": 2}, 1, False)]

    # A taken name is refused at the name field.
    page.goto(app_url + "/dashboard/new-schedule")
    page.get_by_label("Name").fill("report")
    page.get_by_label("Task").fill("api_add")
    page.get_by_label("Cron expression").fill("@daily")
    page.get_by_label("Arguments (JSON object)").fill('{"a": 1, "b": 2}')
    assert posted(page, page.get_by_role("button", name="Create schedule").click) == 422
    expect(page.locator("#name-error")).to_contain_text("report")
    assert schedule_count(db) == 1


def preview_texts(cron: Cron) -> list[str]:
    """The next five fires as the preview writes them in the schedule's zone."""
    zone = ZoneInfo(cron.timezone)
    moment, texts = datetime.now(UTC), []
    for _ in range(5):
        moment = cron.next_after(moment)
        texts.append(moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"))
    return texts


# -- (c) pause, resume, change -------------------------------------------------------------


def test_pause_resume_and_change_a_schedule(page: Page, app_url: str, keys: Keys, db: DB) -> None:
    make_schedule(app_url, keys)
    log_in(page, app_url, keys.admin)
    page.goto(app_url + "/dashboard/schedules")

    assert posted(page, page.get_by_role("button", name="Pause schedule nightly").click) == 303
    page.wait_for_url(app_url + "/dashboard/schedules")
    expect(page.get_by_role("status")).to_have_text("Schedule nightly paused.")
    expect(row(page).locator('[data-state="paused"]')).to_have_text("‖ Paused")
    expect(row(page).locator('[data-next="zone"]')).to_have_text("— (paused)")
    assert schedule_row(db)[2] is True  # type: ignore[index]

    assert posted(page, page.get_by_role("button", name="Resume schedule nightly").click) == 303
    expect(row(page).locator('[data-state="active"]')).to_have_text("▶ Active")
    assert schedule_row(db)[2] is False  # type: ignore[index]

    # Change it on its page: a wrong cron is refused there, kept as typed; nothing changed.
    page.get_by_role("link", name="nightly").click()
    page.wait_for_url(app_url + "/dashboard/schedules/nightly")
    expect(page.get_by_label("Cron expression")).to_have_value("0 9 * * *")
    expect(page.get_by_label("Arguments (JSON object)")).to_have_value('{\n  "a": 2,\n  "b": 3\n}')
    page.get_by_label("Cron expression").fill("15 10 * * MON-FRY")
    page.get_by_label("Time zone").fill("Asia/Tokyo")
    assert posted(page, page.get_by_role("button", name="Save changes").click) == 422
    expect(page.locator("#cron-error")).to_contain_text("day-of-week value 'FRY' is not valid")
    expect(page.get_by_label("Cron expression")).to_have_value("15 10 * * MON-FRY")
    expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
    assert schedule_row(db)[:2] == ("0 9 * * *", "Europe/Paris")  # type: ignore[index]

    # Its preview before saving, then saved.
    page.get_by_label("Cron expression").fill("15 10 * * MON-FRI")
    assert posted(page, page.get_by_role("button", name="Preview next fires").click) == 200
    cron = Cron("15 10 * * MON-FRI", "Asia/Tokyo")
    preview = page.get_by_test_id("preview").filter(has_text="not saved yet")
    for item, text in zip(preview.locator("li").all(), preview_texts(cron), strict=True):
        expect(item).to_contain_text(text)
    assert schedule_row(db)[:2] == ("0 9 * * *", "Europe/Paris")  # type: ignore[index]
    page.get_by_label("Arguments (JSON object)").fill('{"a": 40, "b": 2}')
    assert posted(page, page.get_by_role("button", name="Save changes").click) == 303
    page.wait_for_url(app_url + "/dashboard/schedules/nightly")
    expect(page.get_by_role("status")).to_have_text("Schedule nightly changed.")
    expect(page.locator(".schedule-facts")).to_contain_text("15 10 * * MON-FRI")
    expect(page.locator(".schedule-facts")).to_contain_text("Asia/Tokyo")
    found = schedule_row(db)
    assert found is not None
    assert found[:4] == ("15 10 * * MON-FRI", "Asia/Tokyo", False, {"a": 40, "b": 2})

    # Pausing from its own page comes back to it.
    assert posted(page, page.get_by_role("button", name="Pause schedule nightly").click) == 303
    page.wait_for_url(app_url + "/dashboard/schedules/nightly")
    expect(page.locator(".schedule-facts [data-state]")).to_have_text("‖ Paused")
    expect(page.get_by_test_id("preview").get_by_role("heading")).to_have_text(
        "Next five fires (when resumed)"
    )


# -- (d) a viewer --------------------------------------------------------------------------


def test_a_viewer_sees_no_actions_and_its_forged_posts_are_refused(
    page: Page, app_url: str, keys: Keys, db: DB
) -> None:
    make_schedule(app_url, keys)
    log_in(page, app_url, keys.viewer)
    page.goto(app_url + "/dashboard/schedules")
    expect(row(page)).to_contain_text("Europe/Paris")
    expect(row(page).locator('[data-next="zone"]')).to_contain_text("09:00")
    expect(page.get_by_role("button", name=re.compile("schedule"))).to_have_count(0)
    expect(page.get_by_role("link", name="New schedule")).to_have_count(0)
    page.get_by_role("link", name="nightly").click()
    page.wait_for_url(app_url + "/dashboard/schedules/nightly")
    expect(page.get_by_test_id("preview").locator("li")).to_have_count(5)
    # Only the header's Log out: no action, no form.
    expect(page.get_by_role("button")).to_have_count(1)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_label("Cron expression")).to_have_count(0)

    # The viewer's own cookie and its valid CSRF token: refused by the role check.
    cookies, csrf = session_of(page)
    form = {"csrf": csrf, "name": "forged", "task": "api_add", "cron": "* * * * *", "timezone": "UTC"}
    form |= {"args": '{"a": 1, "b": 2}', "confirm": "yes"}
    with httpx.Client(base_url=app_url, cookies=cookies, follow_redirects=False) as http:
        for path, role in [
            ("/dashboard/schedules/nightly/pause", "operator"),
            ("/dashboard/schedules/nightly/trigger", "operator"),
            ("/dashboard/new-schedule", "admin"),
            ("/dashboard/schedules/nightly/edit", "admin"),
            ("/dashboard/schedules/nightly/remove", "admin"),
        ]:
            refused = http.post(path, data=form)
            assert refused.status_code == 403, (path, refused.status_code, refused.text)
            assert f"needs the {role} role" in refused.text, path
        # Its New schedule page is refused too.
        assert http.get("/dashboard/new-schedule").status_code == 403
    assert schedule_row(db)[:3] == ("0 9 * * *", "Europe/Paris", False)  # type: ignore[index]
    assert schedule_count(db) == 1
    assert db.one("SELECT count(*) FROM {schema}.schedule_fires") == 0
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0


# -- (e) removal needs its confirmation ----------------------------------------------------


def test_removing_a_schedule_needs_its_confirmation(page: Page, app_url: str, keys: Keys, db: DB) -> None:
    make_schedule(app_url, keys)
    log_in(page, app_url, keys.admin)
    page.goto(app_url + "/dashboard/schedules/nightly")

    # Without the confirmation the server refuses (a POST made by hand, with a valid token).
    cookies, csrf = session_of(page)
    with httpx.Client(base_url=app_url, cookies=cookies, follow_redirects=False) as http:
        refused = http.post("/dashboard/schedules/nightly/remove", data={"csrf": csrf})
        assert refused.status_code == 400, refused.text
        assert "needs its confirmation" in refused.text
        unticked = http.post("/dashboard/schedules/nightly/remove", data={"csrf": csrf, "confirm": ""})
        assert unticked.status_code == 400
    assert schedule_count(db) == 1

    # In the browser the box must be ticked first.
    page.get_by_role("button", name="Remove schedule").click()
    expect(page).to_have_url(app_url + "/dashboard/schedules/nightly")
    assert schedule_count(db) == 1
    page.get_by_label("Yes, remove schedule nightly").check()
    assert posted(page, page.get_by_role("button", name="Remove schedule").click) == 303
    page.wait_for_url(app_url + "/dashboard/schedules")
    expect(page.get_by_role("status")).to_have_text("Schedule nightly removed.")
    expect(page.get_by_text("No schedules yet.")).to_be_visible()
    assert schedule_count(db) == 0
    # Its page is gone.
    page.goto(app_url + "/dashboard/schedules/nightly")
    expect(page.get_by_role("alert")).to_contain_text("no schedule named 'nightly'")


# -- without script, on a phone, in the dark -----------------------------------------------


def test_without_script_times_show_in_utc(browser: Browser, app_url: str, keys: Keys) -> None:
    make_schedule(app_url, keys)
    next_fire = Cron("0 9 * * *", "Europe/Paris").next_after(datetime.now(UTC))
    context, page = new_context(browser, java_script_enabled=False)
    try:
        log_in(page, app_url, keys.admin)
        page.goto(app_url + "/dashboard/schedules")
        viewer = row(page).locator('[data-next="viewer"]')
        expect(viewer).to_have_text(next_fire.strftime("%Y-%m-%d %H:%M UTC"))
        # No scheduler has run: the next fire is the cron's, and says so.
        expect(row(page).locator('[data-next="zone"]')).to_contain_text("estimated")
    finally:
        context.close()


def test_the_pages_fit_a_phone_in_the_dark(browser: Browser, app_url: str, keys: Keys) -> None:
    make_schedule(app_url, keys)
    context, page = new_context(browser, viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        log_in(page, app_url, keys.admin)
        page.goto(app_url + "/dashboard/schedules")
        expect(row(page)).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.get_by_role("link", name="nightly").click()
        expect(page.get_by_role("heading", name="Schedule nightly")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 18, 22)"
        page.goto(app_url + "/dashboard/new-schedule")
        expect(page.get_by_label("Cron expression")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
