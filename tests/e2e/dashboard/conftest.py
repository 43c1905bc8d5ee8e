"""Fixtures of the dashboard's tests: the app (API and dashboard) served by uvicorn on a free
port, keys of each role (the API tests' fixtures), and a headless Chromium driven by
Playwright (the system's /usr/bin/chromium: never a downloaded browser).

Without Chromium the browser tests skip, except in CI (CI=true), where they fail."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from starlette.types import ASGIApp

from conveyor.api import create_app
from conveyor.dashboard.session import SESSION_COOKIE, csrf_token
from conveyor.db.database import Database
from conveyor.ops.keys import create_key, revoke_key
from conveyor.ops.roles import LOCAL_ADMIN

from .. import api_tasks
from ..api.conftest import serve  # noqa: F401 - a fixture shared with the API's tests
from ..api.support import ROLES, Keys, Server, bearer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
QUEUE = api_tasks.QUEUE


@pytest.fixture
def app_url(database_url: str, schema: str, serve: Callable[[ASGIApp], Server]) -> str:  # noqa: F811
    return serve(create_app(database_url=database_url, schema=schema)).url


@pytest.fixture
def keys(database_url: str, schema: str) -> Keys:
    """A token per role, and a revoked one; made on a loop of their own (Playwright's sync API
    runs one in the test's thread, where pytest-asyncio's fixtures cannot)."""

    async def make() -> Keys:
        database = Database(database_url, schema)
        await database.open()
        try:
            tokens = {}
            for role in ROLES:
                _, tokens[role] = await create_key(database, LOCAL_ADMIN, f"test-{role}", role)
            info, tokens["revoked"] = await create_key(database, LOCAL_ADMIN, "test-revoked", "admin")
            await revoke_key(database, LOCAL_ADMIN, info.id)
            return Keys(**tokens)
        finally:
            await database.close()

    return in_thread(make())


def require_chromium(path: str = CHROMIUM) -> None:
    """Skip without Chromium, except in CI (CI=true), where the browser tests must run: fail."""
    if not os.path.exists(path):
        message = f"no Chromium at {path} (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


def log_in(page: Page, base_url: str, key: str) -> None:
    """Sign in through the login form and land on the overview."""
    page.goto(base_url + "/")
    page.wait_for_url(re.compile(r"/login$"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base_url + "/")


def enqueue(base_url: str, keys: Keys, count: int = 1) -> None:
    with httpx.Client(base_url=base_url, headers=bearer(keys.admin)) as http:
        for i in range(count):
            response = http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": i, "b": 1}})
            assert response.status_code == 201, response.text


def enqueue_job(base_url: str, keys: Keys, task: str, args: dict[str, Any], **options: Any) -> int:
    """Enqueue one job through the API as an admin; its id."""
    with httpx.Client(base_url=base_url, headers=bearer(keys.admin)) as http:
        response = http.post("/api/v1/jobs", json={"task": task, "args": args, **options})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def make_schedule(app_url: str, keys: Keys, name: str = "nightly", **fields: Any) -> None:
    """Create a schedule through the API (a daily api_add in Europe/Paris unless ``fields`` say)."""
    definition = {"name": name, "cron": "0 9 * * *", "timezone": "Europe/Paris", "task": "api_add"}
    definition |= {"args": {"a": 2, "b": 3}} | fields
    with httpx.Client(base_url=app_url, headers=bearer(keys.admin)) as http:
        made = http.post("/api/v1/schedules", json=definition)
    assert made.status_code == 201, made.text


def session(base_url: str, key: str) -> tuple[httpx.Client, str]:
    """An HTTP client holding a dashboard session of ``key`` (its cookie), and the session's
    CSRF token, for posting forms as a signed-in browser would."""
    http = httpx.Client(base_url=base_url, cookies={SESSION_COOKIE: key}, follow_redirects=False, timeout=30)
    return http, csrf_token(key)


def browser_session(page: Page, base_url: str) -> tuple[httpx.Client, str]:
    """An HTTP client carrying the browser's cookies (its session), and the page's CSRF token."""
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert token
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return httpx.Client(base_url=base_url, cookies=cookies, follow_redirects=False), token


T = TypeVar("T")


def in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a loop of its own, in a thread (a sync test's thread may
    hold pytest-asyncio's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def make_key(database_url: str, schema: str, role: str) -> tuple[int, str]:
    async def make() -> tuple[int, str]:
        database = Database(database_url, schema)
        await database.open()
        try:
            info, token = await create_key(database, LOCAL_ADMIN, f"dash-{role}", role)
            return info.id, token
        finally:
            await database.close()

    return in_thread(make())


def revoke(database_url: str, schema: str, key_id: int) -> None:
    async def run() -> None:
        database = Database(database_url, schema)
        await database.open()
        try:
            await revoke_key(database, LOCAL_ADMIN, key_id)
        finally:
            await database.close()

    in_thread(run())
