"""The dashboard in a real browser (headless Chromium, Playwright) against uvicorn serving
create_app on a real database: login, the overview's counts and its live refresh, pausing and
resuming a queue, a viewer's page and forged POST, a wrong key, logout, a revoked key."""

from __future__ import annotations

import re
from typing import Literal

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from ...helpers import DB
from ..api.support import Keys, bearer
from .conftest import QUEUE, enqueue, log_in, make_key, require_chromium, revoke

pytestmark = pytest.mark.processes


def row(page: Page, queue: str = QUEUE) -> Locator:
    return page.locator(f'tr[data-queue="{queue}"]')


def paused_in_db(db: DB, queue: str = QUEUE) -> bool:
    return bool(db.one("SELECT paused FROM {schema}.queues WHERE name = %s", [queue]))


def test_operator_sees_the_queue_counts_live_and_pauses_and_resumes(
    page: Page, app_url: str, keys: Keys, db: DB
) -> None:
    enqueue(app_url, keys, 2)
    log_in(page, app_url, keys.operator)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text("operator")
    expect(row(page).locator('[data-count="waiting"]')).to_have_text("2")
    expect(row(page).locator('[data-count="running"]')).to_have_text("0")
    expect(row(page).locator('[data-count="dead"]')).to_have_text("0")
    expect(page.get_by_test_id("workers-alive")).to_have_text("0")
    # Jobs due and nobody serving the queue: a warning.
    expect(page.locator(".warnings")).to_contain_text(f"Queue '{QUEUE}' has 2 job(s) due")

    # The table refreshes itself (htmx polling): a job enqueued now shows without a reload.
    enqueue(app_url, keys, 1)
    expect(row(page).locator('[data-count="waiting"]')).to_have_text("3", timeout=10_000)

    page.get_by_role("button", name=f"Pause queue {QUEUE}").click()
    page.wait_for_url(app_url + "/")
    expect(row(page).locator('[data-state="paused"]')).to_be_visible()
    assert paused_in_db(db)

    page.get_by_role("button", name=f"Resume queue {QUEUE}").click()
    page.wait_for_url(app_url + "/")
    expect(row(page).locator('[data-state="active"]')).to_be_visible()
    assert not paused_in_db(db)


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(
    page: Page, app_url: str, keys: Keys, db: DB
) -> None:
    enqueue(app_url, keys)
    log_in(page, app_url, keys.viewer)
    expect(row(page).locator('[data-count="waiting"]')).to_have_text("1")
    expect(page.get_by_role("button", name=re.compile(r"^(Pause|Resume) queue"))).to_have_count(0)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # The viewer's own cookie and a valid CSRF token (from the viewer's page): refused by the
    # service layer's role check, nothing changed.
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=app_url, cookies=cookies, follow_redirects=False) as http:
        refused = http.post(f"/dashboard/queues/{QUEUE}/pause", data={"csrf": csrf})
    assert refused.status_code == 403, refused.text
    assert "needs the operator role" in refused.text
    assert not paused_in_db(db)


def test_a_wrong_key_is_refused_with_a_message(page: Page, app_url: str, keys: Keys) -> None:
    page.goto(app_url + "/login")
    page.get_by_label("API key").fill(keys.revoked)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That API key was refused")
    page.get_by_label("API key").fill("cvk_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That API key was refused")
    assert not [c for c in page.context.cookies() if c["name"] == "conveyor_session"]
    page.goto(app_url + "/")
    page.wait_for_url(re.compile(r"/login$"))


def test_logout_ends_the_session(page: Page, app_url: str, keys: Keys) -> None:
    log_in(page, app_url, keys.admin)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "conveyor_session"]
    page.goto(app_url + "/")
    page.wait_for_url(re.compile(r"/login$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_revoked_keys_session_is_refused_at_once(
    page: Page, app_url: str, keys: Keys, database_url: str, schema: str, db: DB
) -> None:
    enqueue(app_url, keys)
    key_id, token = make_key(database_url, schema, "operator")
    log_in(page, app_url, token)
    expect(row(page)).to_be_visible()
    revoke(database_url, schema, key_id)
    # The table's next refresh asks the key cache again: the open page goes to the login page
    # by itself (htmx follows HX-Redirect), within one polling period.
    page.wait_for_url(re.compile(r"/login\?ended=1$"), timeout=10_000)
    expect(page.get_by_role("alert")).to_contain_text("Your session has ended")
    assert not [c for c in page.context.cookies() if c["name"] == "conveyor_session"]
    # Signing in again with the revoked key is refused.
    page.get_by_label("API key").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That API key was refused")
    assert not paused_in_db(db)


@pytest.mark.parametrize(
    ("scheme", "background"), [("light", "rgb(255, 255, 255)"), ("dark", "rgb(15, 18, 22)")]
)
def test_the_overview_follows_the_systems_theme_fits_a_phone_and_shows_focus(
    browser: Browser, app_url: str, keys: Keys, scheme: Literal["light", "dark"], background: str
) -> None:
    enqueue(app_url, keys)
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, app_url, keys.operator)
        expect(row(page)).to_be_visible()
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        # Nothing is wider than the phone: the queue table scrolls inside its own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # Keyboard focus is drawn.
        page.keyboard.press("Tab")
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    finally:
        context.close()


def test_schedules_without_a_scheduler_are_a_warning(page: Page, app_url: str, keys: Keys) -> None:
    with httpx.Client(base_url=app_url, headers=bearer(keys.admin)) as http:
        made = http.post(
            "/api/v1/schedules",
            json={"name": "nightly", "cron": "0 3 * * *", "task": "api_add", "args": {"a": 1, "b": 2}},
        )
        assert made.status_code == 201, made.text
    log_in(page, app_url, keys.viewer)
    expect(page.locator(".warnings")).to_contain_text("1 schedule(s) will not fire: no scheduler has ticked")
    expect(page.get_by_test_id("scheduler")).to_have_text("none running")


def test_without_chromium_the_browser_tests_fail_in_ci_and_skip_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no Chromium"):
        require_chromium("/nonexistent/chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        require_chromium("/nonexistent/chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_chromium("/nonexistent/chromium")
