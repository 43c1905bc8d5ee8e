"""Adversarial review of the dashboard's Schedules section (review3), over real HTTP and a real
browser (uvicorn serving create_app on a real database), with real ``conveyor scheduler`` and
``conveyor worker`` processes where a flow needs them.

Found and fixed (each was a 500): a max_attempts past PostgreSQL's integer, arguments nested
too deeply for json.loads (RecursionError), a NUL byte in a schedule's name in the path of
pause/resume/trigger/remove/edit (psycopg's DataError). Found, not fixed (xfail): a schedule
named ``new`` has no page. The rest held and is kept as regressions.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, expect

from conveyor.cron import Cron
from conveyor.dashboard import session as sessions

from ...helpers import DB, REPO, subprocess_env, wait_until_sync
from ..api.conftest import workers  # noqa: F401 - a fixture shared with the API's tests
from ..api.support import Keys, Workers, bearer
from .conftest import log_in, make_schedule, session

BASE = "/dashboard/schedules"


def form(**fields: str) -> dict[str, str]:
    base = {
        "name": "probe",
        "task": "api_add",
        "cron": "0 9 * * *",
        "timezone": "UTC",
        "args": '{"a": 1, "b": 2}',
        "queue": "",
        "priority": "",
        "max_attempts": "",
        "catch_up": "once",
    }
    return base | fields


# Input that once crashed (500) an entry point, and some that held, kept as regressions.
BAD_FIELDS = [
    {"max_attempts": "99999999999"},  # past PostgreSQL's integer: was a 500
    {"max_attempts": "9" * 4000},  # a numeric: was a 500
    {"args": '{"a": NaN, "b": 1}'},
    {"args": '{"a": ' + "[" * 20_000 + "]" * 20_000 + ', "b": 1}'},
    {"args": '{"a": ' + "[" * 990 + "]" * 990 + ', "b": 1}'},
    {"args": '{"a": "\\u0000", "b": 1}'},
    {"args": '{"a": "\\ud800", "b": 1}'},
    {"args": '{"a": 1e999, "b": 1}'},
    {"args": "[1, 2]"},
    {"priority": "99999999999"},
    {"task": "\x00"},
    {"queue": "\x00"},
    {"cron": "0 0 30 2 *"},
    {"timezone": "../../etc/passwd"},
    {"timezone": "localtime"},
    {"name": "\x00"},
]
IDS = [repr(f)[:40] for f in BAD_FIELDS]


@pytest.mark.parametrize("preview", [False, True])
@pytest.mark.parametrize("fields", BAD_FIELDS, ids=IDS)
def test_a_hostile_new_form_is_refused_not_a_server_error(
    app_url: str, keys: Keys, db: DB, fields: dict[str, str], preview: bool
) -> None:
    http, csrf = session(app_url, keys.admin)
    data = form(**fields) | {"csrf": csrf} | ({"preview": "1"} if preview else {})
    with http:
        response = http.post("/dashboard/new-schedule", data=data)
    # a preview checks the cron, the zone and the JSON only: 200 with the fires, or 422
    expected = (200, 422) if preview else (422,)
    assert response.status_code in expected, (response.status_code, response.text[-2000:])
    assert int(db.one("SELECT count(*) FROM {schema}.schedules")) == 0


@pytest.mark.parametrize("fields", BAD_FIELDS[:2], ids=IDS[:2])
def test_a_hostile_change_is_refused_and_the_schedule_kept(
    app_url: str, keys: Keys, db: DB, fields: dict[str, str]
) -> None:
    make_schedule(app_url, keys)
    http, csrf = session(app_url, keys.admin)
    with http:
        response = http.post(f"{BASE}/nightly/edit", data=form(**fields) | {"csrf": csrf})
        assert response.status_code == 422, response.text[-2000:]
        assert http.get(f"{BASE}/nightly").status_code == 200
    assert db.one("SELECT max_attempts FROM {schema}.schedules WHERE name = 'nightly'") is None


@pytest.mark.parametrize("name", ["%00", "a%00b"])
@pytest.mark.parametrize("action", ["pause", "resume", "trigger", "remove", "edit"])
def test_a_nul_byte_in_the_path_is_not_found_not_a_server_error(
    app_url: str, keys: Keys, name: str, action: str
) -> None:
    """PostgreSQL cannot be asked about a name with a NUL byte: it was a 500 (psycopg's
    DataError) on every action."""
    http, csrf = session(app_url, keys.admin)
    with http:
        response = http.post(f"{BASE}/{name}/{action}", data=form() | {"csrf": csrf, "confirm": "yes"})
    assert response.status_code == 404, response.text[-2000:]


# -- a schedule declared in code, changed on the dashboard, then a scheduler starts -------


def start_scheduler(database_url: str, schema: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "conveyor", "scheduler"),
            *("--tasks", "tests.e2e.dashboard.review3_tasks", "--tick", "0.3", "--lease", "3"),
        ],
        cwd=REPO,
        env=subprocess_env(database_url, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=10)


def test_a_dashboard_change_of_a_code_schedule_is_shown_as_one_the_next_scheduler_undoes(
    app_url: str, keys: Keys, db: DB, database_url: str, schema: str
) -> None:
    """The page says, before and after the change, that a starting scheduler writes the code's
    definition again; and a real scheduler does: the edit does not silently survive as if it
    were the code's."""
    first = start_scheduler(database_url, schema)
    try:
        wait_until_sync(lambda: db.all("SELECT 1 FROM {schema}.schedules WHERE name = 'coded'"), within=30)
    finally:
        stop(first)
    http, csrf = session(app_url, keys.admin)
    with http:
        page = http.get(f"{BASE}/coded").text
        assert "declared in code: a scheduler starting writes that definition again" in page
        changed = http.post(
            f"{BASE}/coded/edit",
            data=form(name="coded", cron="30 7 * * *", timezone="Europe/Paris") | {"csrf": csrf},
        )
        assert changed.status_code == 303, changed.text[-2000:]
        assert db.one("SELECT cron FROM {schema}.schedules WHERE name = 'coded'") == "30 7 * * *"
        page = http.get(f"{BASE}/coded").text
        assert "in code (the scheduler writes it again when it starts)" in page  # still said
        assert "declared in code: a scheduler starting writes that definition again" in page
    second = start_scheduler(database_url, schema)
    try:
        wait_until_sync(
            lambda: db.one("SELECT cron FROM {schema}.schedules WHERE name = 'coded'") == "0 9 * * *",
            within=30,
        )
    finally:
        stop(second)


# -- a schedule named like a route -----------------------------------------------------


def test_a_schedule_named_new_has_a_page(app_url: str, keys: Keys) -> None:
    make_schedule(app_url, keys, name="new")
    http, _ = session(app_url, keys.admin)
    with http:
        listing = http.get(BASE).text
        assert f'href="{BASE}/new"' in listing  # its link in the list
        opened = http.get(f"{BASE}/new")
    assert "<h1>Schedule new</h1>" in opened.text


# -- races with a real scheduler and worker --------------------------------------------


def test_a_double_submitted_run_now_enqueues_one_job_per_post_and_the_worker_runs_both(
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811 - the fixture
) -> None:
    """Two "Run now" POSTs at once (a double click): each is a manual fire with its own job
    (none lost, none merged), and a real worker completes both. Run now is not idempotent:
    each POST is a run, as its notice says."""
    make_schedule(app_url, keys)
    workers.start()
    http, csrf = session(app_url, keys.operator)

    def run_now(_: int) -> httpx.Response:
        with httpx.Client(base_url=app_url, cookies=http.cookies, timeout=30) as one:
            return one.post(f"{BASE}/nightly/trigger", data={"csrf": csrf})

    with http, ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(run_now, range(2)))
    assert [a.status_code for a in answers] == [303, 303]
    jobs = db.all("SELECT job_id FROM {schema}.schedule_fires WHERE schedule = 'nightly' AND kind = 'manual'")
    assert len({j for (j,) in jobs}) == 2

    def completed() -> bool:
        with httpx.Client(base_url=app_url, headers=bearer(keys.admin)) as api:
            states = [api.get(f"/api/v1/jobs/{j}").json().get("state") for (j,) in jobs]
        return states == ["completed", "completed"]

    wait_until_sync(completed, within=30)


def test_changing_a_schedule_while_the_scheduler_fires_it_loses_and_doubles_no_fire(
    app_url: str, keys: Keys, db: DB, database_url: str, schema: str
) -> None:
    """A schedule firing every 2 seconds, changed (its arguments, its cron unchanged) again and
    again from the dashboard while a real scheduler fires it: every fire time comes once, 2 s
    after the last, none skipped, none twice."""
    make_schedule(app_url, keys, name="often", cron="*/2 * * * * *", timezone="UTC")
    scheduler = start_scheduler(database_url, schema)

    def fire_times() -> list[datetime]:
        rows = db.all(
            "SELECT fire_time FROM {schema}.schedule_fires WHERE schedule = 'often' AND kind <> 'manual'"
            " ORDER BY fire_time"
        )
        return [r[0] for r in rows]

    try:
        wait_until_sync(lambda: len(fire_times()) >= 1, within=30)
        http, csrf = session(app_url, keys.admin)
        deadline = time.monotonic() + 40
        i = 0
        with http:
            while len(fire_times()) < 6 and time.monotonic() < deadline:  # edits for ~10 s
                fields = form(name="often", cron="*/2 * * * * *", args=f'{{"a": {i}, "b": 1}}')
                assert http.post(f"{BASE}/often/edit", data=fields | {"csrf": csrf}).status_code == 303
                if i % 10 == 9:
                    assert http.post(f"{BASE}/often/trigger", data={"csrf": csrf}).status_code == 303
                i += 1
        assert i > 10
        count = len(fire_times())
        wait_until_sync(lambda: len(fire_times()) >= count + 2, within=30)
    finally:
        stop(scheduler)
    times = fire_times()
    assert len(times) >= 4
    gaps = {(b - a).total_seconds() for a, b in pairwise(times)}
    assert gaps == {2.0}, times
    kinds = db.all("SELECT DISTINCT kind FROM {schema}.schedule_fires WHERE schedule = 'often'")
    assert {k for (k,) in kinds} <= {"on_time", "late", "manual"}


# -- roles, CSRF, GET ------------------------------------------------------------------

ADMIN_ACTIONS = [
    ("/dashboard/new-schedule", form(name="forged")),
    (f"{BASE}/nightly/edit", form(name="nightly", cron="1 1 * * *")),
    (f"{BASE}/nightly/remove", {"confirm": "yes"}),
]


@pytest.mark.parametrize(("path", "data"), ADMIN_ACTIONS, ids=[p for p, _ in ADMIN_ACTIONS])
@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_an_operator_or_viewer_cannot_forge_an_admin_action(
    app_url: str, keys: Keys, db: DB, role: str, path: str, data: dict[str, str]
) -> None:
    make_schedule(app_url, keys)
    http, csrf = session(app_url, keys[role])
    with http:
        answer = http.post(path, data=data | {"csrf": csrf})
    assert answer.status_code == 403, answer.text[-1000:]
    assert db.all("SELECT name, cron FROM {schema}.schedules") == [("nightly", "0 9 * * *")]


@pytest.mark.parametrize("action", ["pause", "trigger", "edit", "remove"])
@pytest.mark.parametrize("csrf", [None, "", "x" * 64, "other-session"])
def test_an_action_without_its_session_csrf_token_does_nothing(
    app_url: str, keys: Keys, db: DB, action: str, csrf: str | None
) -> None:
    make_schedule(app_url, keys)
    http, _ = session(app_url, keys.admin)
    token = sessions.csrf_token(keys.operator) if csrf == "other-session" else csrf
    data = (
        form(name="nightly", cron="1 1 * * *")
        | {"confirm": "yes"}
        | ({} if token is None else {"csrf": token})
    )
    with http:
        answer = http.post(f"{BASE}/nightly/{action}", data=data)
        assert answer.status_code == 403
        assert http.get(f"{BASE}/nightly/{action}").status_code in (404, 405)  # no GET changes state
    assert db.all("SELECT cron, paused FROM {schema}.schedules") == [("0 9 * * *", False)]
    assert db.one("SELECT count(*) FROM {schema}.schedule_fires") == 0


def test_hostile_text_is_escaped_and_the_pages_allow_no_inline_script(app_url: str, keys: Keys) -> None:
    """Arguments (the only free text a schedule stores) with markup are shown as text; the CSP
    allows no inline script."""
    hostile = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    make_schedule(
        app_url, keys, task="api_echo", args={"value": hostile, "meta": {"</pre><script>": hostile}}
    )
    http, csrf = session(app_url, keys.admin)
    with http:
        for answer in (
            http.get(BASE),
            http.get(f"{BASE}/nightly"),
            http.post(f"{BASE}/nightly/edit", data=form(name="nightly", args=hostile) | {"csrf": csrf}),
            http.post(
                "/dashboard/new-schedule", data=form(name="x", task=hostile, args=hostile) | {"csrf": csrf}
            ),
        ):
            assert "<script>alert" not in answer.text
            assert "<img src=x" not in answer.text
            policy = answer.headers["content-security-policy"]
            assert "default-src 'self'" in policy  # scripts from the dashboard's own files only
            assert "unsafe-inline" not in policy
            assert "script-src" not in policy


# -- time zones --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "zone", "viewer"),
    [
        ("30 2 * 3 SUN", "America/New_York", "Asia/Kathmandu"),  # 2027-03-14 skips 02:30
        ("30 1 * 10 SUN", "Europe/London", "Pacific/Chatham"),  # 2027-10-31 repeats 01:30
        ("0 12 * * *", "Etc/GMT+12", "Pacific/Kiritimati"),  # a day apart
    ],
)
def test_the_next_fires_read_the_same_instant_in_its_zone_and_the_viewers(
    browser: Browser, app_url: str, keys: Keys, cron: str, zone: str, viewer: str
) -> None:
    """The page's five next fires (its zone, then the viewer's, written by local-time.js in a
    browser set to another zone) are the scheduler's instants, across DST changes."""
    make_schedule(app_url, keys, cron=cron, timezone=zone)
    context = browser.new_context(timezone_id=viewer, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, app_url, keys.admin)
        page.goto(f"{app_url}{BASE}/nightly")
        items = page.get_by_test_id("preview").first.locator("li")
        expect(items).to_have_count(5)
        expect(items.first.locator("time[data-filled]")).to_have_count(1)
        moment = datetime.now(UTC)
        expected = []
        for _ in range(5):
            moment = Cron(cron, zone).next_after(moment)
            expected.append(moment)
        for item, at in zip(items.all(), expected, strict=True):
            text = item.inner_text()
            assert at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") in text, text
            here = at.astimezone(ZoneInfo(viewer))
            assert here.strftime("%d/%m/%Y, %H:%M") in item.locator("time").inner_text(), text
            assert item.locator("time").get_attribute("datetime") == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    finally:
        context.close()
