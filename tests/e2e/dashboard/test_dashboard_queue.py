"""The queue page and the throughput chart in a real browser (headless Chromium, Playwright),
against uvicorn serving create_app on a real database, with real ``conveyor worker`` and
``conveyor scheduler`` processes: pausing stops work and resuming drains it, limits set and
cleared through the form (bad values shown, 422), an unknown queue's 404, a viewer's page
without buttons and its forged POSTs refused, and the chart counting the jobs that ran."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from ...helpers import DB, REPO, subprocess_env, wait_until_sync
from ..api.conftest import workers  # noqa: F401 - a fixture shared with the API's tests
from ..api.support import Keys, Workers, bearer
from . import queue_tasks  # noqa: F401 - registers dash_gated in this process (the API enqueues it)
from .conftest import QUEUE, enqueue, log_in

pytestmark = pytest.mark.processes

JOBS = 12


@pytest.fixture
def scheduler(database_url: str, schema: str, db: DB) -> Iterator[subprocess.Popen[str]]:
    """A ``conveyor scheduler`` process, once it holds the leader's lease."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "scheduler",
            "--tasks",
            "tests.e2e.api_tasks",
            "--tick",
            "0.2",
            "--lease",
            "3",
        ],
        cwd=REPO,
        env=subprocess_env(database_url, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_sync(
            lambda: (
                process.poll() is not None
                or db.all("SELECT pid FROM {schema}.leaders WHERE role = 'scheduler'") == [(process.pid,)]
            ),
            within=30,
        )
        assert process.poll() is None, process.communicate()[0]
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


def queue_url(app_url: str, queue: str = QUEUE) -> str:
    return f"{app_url}/dashboard/queues/{queue}"


def count(page: Page, name: str) -> str:
    return page.locator(f'#queue-live [data-count="{name}"]').inner_text()


def completed_in_db(db: DB) -> int:
    return int(
        db.one("SELECT count(*) FROM {schema}.job_history WHERE queue = %s AND state = 'completed'", [QUEUE])
    )


def limits_in_db(db: DB) -> tuple[object, ...]:
    return tuple(
        db.one(
            "SELECT rate_limit, rate_period, concurrency, key_rate_limit, key_concurrency"
            " FROM {schema}.queues WHERE name = %s",
            [QUEUE],
        )
    )


def enqueue_gated(app_url: str, keys: Keys, count: int, gate: Path) -> None:
    """Jobs that run until ``gate`` exists."""
    with httpx.Client(base_url=app_url, headers=bearer(keys.admin)) as http:
        for _ in range(count):
            response = http.post("/api/v1/jobs", json={"task": "dash_gated", "args": {"gate": str(gate)}})
            assert response.status_code == 201, response.text


def test_pausing_the_queue_stops_work_and_resuming_drains_it(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
    scheduler: subprocess.Popen[str],
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    workers.start("--concurrency", "2", tasks="tests.e2e.dashboard.queue_tasks")
    enqueue_gated(app_url, keys, JOBS, gate)
    log_in(page, app_url, keys.operator)
    expect(page.get_by_test_id("scheduler")).to_contain_text(f"pid {scheduler.pid}")
    # The overview's queue names lead to the queue page.
    page.get_by_role("link", name=QUEUE, exact=True).click()
    page.wait_for_url(queue_url(app_url))
    expect(page.get_by_role("heading", name=f"Queue {QUEUE}")).to_be_visible()
    expect(page.get_by_test_id("queue-state")).to_contain_text("Active")
    # Work is under way: two jobs running (the worker's concurrency), the rest waiting.
    expect(page.locator('#queue-live [data-count="running"]')).to_have_text("2", timeout=15_000)
    expect(page.locator('#queue-live [data-count="waiting"]')).to_have_text(str(JOBS - 2))
    expect(page.locator('[data-state-jobs="running"] tbody tr')).to_have_count(2)

    page.get_by_role("button", name="Pause queue").click()
    page.wait_for_url(queue_url(app_url))  # back to the queue page, not the overview
    expect(page.get_by_role("status")).to_have_text(f"Queue {QUEUE} paused.")
    expect(page.get_by_test_id("queue-state")).to_contain_text("Paused")
    assert db.one("SELECT paused FROM {schema}.queues WHERE name = %s", [QUEUE]) is True
    # The two running jobs may finish now; none starts: running goes to 0, the backlog stays.
    gate.touch()
    expect(page.locator('#queue-live [data-count="running"]')).to_have_text("0", timeout=15_000)
    wait_until_sync(lambda: completed_in_db(db) == 2, within=15)
    expect(page.locator('#queue-live [data-count="waiting"]')).to_have_text(str(JOBS - 2))
    # Three more refreshes of the live counts while paused (the gate open): nothing moves,
    # in the page or the database.
    for _ in range(3):
        with page.expect_response(re.compile(r"/dashboard/queues/api/live$")):
            pass
        expect(page.locator('#queue-live [data-count="waiting"]')).to_have_text(str(JOBS - 2))
        expect(page.locator('#queue-live [data-count="running"]')).to_have_text("0")
        assert completed_in_db(db) == 2
        assert (
            db.one("SELECT count(*) FROM {schema}.jobs WHERE queue = %s AND state = 'available'", [QUEUE])
            == JOBS - 2
        )

    page.get_by_role("button", name="Resume queue").click()
    page.wait_for_url(queue_url(app_url))
    expect(page.get_by_test_id("queue-state")).to_contain_text("Active")
    expect(page.locator('#queue-live [data-count="waiting"]')).to_have_text("0", timeout=30_000)
    expect(page.locator('#queue-live [data-count="running"]')).to_have_text("0", timeout=15_000)
    wait_until_sync(lambda: completed_in_db(db) == JOBS, within=15)
    assert db.one("SELECT count(*) FROM {schema}.jobs WHERE queue = %s", [QUEUE]) == 0

    # The throughput chart counts them: on the queue page (for this queue) and the overview.
    page.reload()
    chart = page.locator("svg.throughput-chart")
    expect(chart).to_have_attribute("data-completed", str(JOBS))
    expect(chart.locator("desc")).to_have_text(
        re.compile(rf"^{JOBS} completed and 0 failed \(dead\) in the last hour")
    )
    expect(page.get_by_test_id("throughput-summary")).to_contain_text(f"{JOBS} completed")
    expect(chart.locator("title").first).to_have_text(f"Throughput per minute, queue {QUEUE}, last hour")
    # The recent completed jobs are listed.
    expect(page.locator('[data-state-jobs="completed"] tbody tr')).to_have_count(10)
    page.goto(app_url + "/")
    expect(page.locator("svg.throughput-chart")).to_have_attribute("data-completed", str(JOBS))
    expect(page.get_by_test_id("throughput-summary")).to_contain_text(f"{JOBS} completed")


def test_an_admin_sets_and_clears_limits_through_the_form(
    page: Page, app_url: str, keys: Keys, db: DB
) -> None:
    enqueue(app_url, keys, 1)
    log_in(page, app_url, keys.admin)
    page.goto(queue_url(app_url))
    expect(page.get_by_test_id("limits")).to_contain_text("No limits")
    expect(page.locator('[data-state-jobs="available"] tbody tr')).to_have_count(1)

    page.get_by_label("Rate (starts per period, like 20/1m)").fill("5/1s")
    page.get_by_label("Concurrency (running at once)").fill("2")
    page.get_by_role("button", name="Set limits").click()
    page.wait_for_url(queue_url(app_url))
    expect(page.get_by_role("status")).to_have_text(f"Limits of queue {QUEUE} set: rate 5/1s, concurrency 2.")
    expect(page.get_by_test_id("limits")).to_contain_text("rate 5/1s, concurrency 2")
    set_limits = limits_in_db(db)
    assert set_limits[0] == 5
    assert set_limits[1].total_seconds() == 1  # type: ignore[attr-defined]
    assert set_limits[2] == 2
    assert set_limits[3:] == (None, None)

    # A value that does not parse: shown again with its message, 422, nothing changed.
    page.get_by_label("Rate (starts per period, like 20/1m)").fill("fast")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Set limits").click()
    assert posted.value.status == 422
    expect(page.get_by_role("alert")).to_contain_text("rate 'fast' is not valid")
    expect(page.get_by_label("Rate (starts per period, like 20/1m)")).to_have_value("fast")
    page.get_by_label("Rate (starts per period, like 20/1m)").fill("5/1s")
    page.get_by_label("Concurrency (running at once)").fill("0")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Set limits").click()
    assert posted.value.status == 422
    expect(page.get_by_role("alert")).to_contain_text("concurrency must be a whole number from 1")
    assert limits_in_db(db) == set_limits

    # Clearing needs its box ticked; the server refuses it without.
    page.goto(queue_url(app_url))
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Clear limits").click()
    assert posted.value.status == 422
    expect(page.get_by_role("alert")).to_contain_text("Tick the box")
    assert limits_in_db(db) == set_limits
    page.get_by_label("Yes, remove every limit of this queue").check()
    page.get_by_role("button", name="Clear limits").click()
    page.wait_for_url(queue_url(app_url))
    expect(page.get_by_role("status")).to_have_text(f"Limits of queue {QUEUE} cleared.")
    expect(page.get_by_test_id("limits")).to_contain_text("No limits")
    assert limits_in_db(db) == (None, None, None, None, None)


def test_an_unknown_queue_is_a_404_page(page: Page, app_url: str, keys: Keys) -> None:
    log_in(page, app_url, keys.viewer)
    for name in ("nosuchqueue", "not%20a%20name!"):
        response = page.goto(f"{app_url}/dashboard/queues/{name}")
        assert response is not None
        assert response.status == 404
        expect(page.get_by_role("alert")).to_contain_text("There is no queue named")
    response = page.goto(f"{app_url}/dashboard/throughput?queue=nosuchqueue")
    assert response is not None
    assert response.status == 404


def test_a_viewer_sees_no_buttons_and_its_forged_posts_are_refused(
    page: Page, app_url: str, keys: Keys, db: DB
) -> None:
    enqueue(app_url, keys, 1)
    log_in(page, app_url, keys.viewer)
    page.goto(queue_url(app_url))
    expect(page.locator('#queue-live [data-count="waiting"]')).to_have_text("1")
    expect(page.get_by_test_id("throughput-summary")).to_contain_text("0 completed")
    expect(
        page.get_by_role("button", name=re.compile(r"Pause|Resume|Set limits|Clear limits"))
    ).to_have_count(0)
    expect(page.get_by_label("Rate (starts per period, like 20/1m)")).to_have_count(0)

    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    before = limits_in_db(db)
    with httpx.Client(base_url=app_url, cookies=cookies, follow_redirects=False) as http:
        paused = http.post(
            f"/dashboard/queues/{QUEUE}/pause?back=/dashboard/queues/{QUEUE}", data={"csrf": csrf}
        )
        limited = http.post(
            f"/dashboard/queues/{QUEUE}/limits", data={"csrf": csrf, "action": "set", "concurrency": "1"}
        )
        cleared = http.post(
            f"/dashboard/queues/{QUEUE}/limits", data={"csrf": csrf, "action": "clear", "confirm": "yes"}
        )
        no_csrf = http.post(f"/dashboard/queues/{QUEUE}/limits", data={"action": "set", "concurrency": "1"})
    assert paused.status_code == 403, paused.text
    assert "needs the operator role" in paused.text
    assert limited.status_code == 403, limited.text
    assert "needs the admin role" in limited.text
    assert cleared.status_code == 403, cleared.text
    assert no_csrf.status_code == 403, no_csrf.text
    assert db.one("SELECT paused FROM {schema}.queues WHERE name = %s", [QUEUE]) is False
    assert limits_in_db(db) == before


def test_an_operator_pauses_but_cannot_set_limits(page: Page, app_url: str, keys: Keys, db: DB) -> None:
    enqueue(app_url, keys, 1)
    log_in(page, app_url, keys.operator)
    page.goto(queue_url(app_url))
    expect(page.get_by_role("button", name="Pause queue")).to_be_visible()
    expect(page.get_by_role("button", name="Set limits")).to_have_count(0)
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=app_url, cookies=cookies, follow_redirects=False) as http:
        limited = http.post(
            f"/dashboard/queues/{QUEUE}/limits", data={"csrf": csrf, "action": "set", "concurrency": "1"}
        )
    assert limited.status_code == 403, limited.text
    assert limits_in_db(db) == (None, None, None, None, None)
