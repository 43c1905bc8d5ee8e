"""The dashboard's workers page in a real browser (headless Chromium, Playwright) against
uvicorn serving create_app on a real database, with real ``conveyor worker`` processes: a
running worker and the job it holds, refreshed live (htmx polling) as the job ends and the
worker stops; a worker killed without a clean stop shown not alive once its heartbeat is old
(the heartbeat moved back in the database rather than waiting out a lease)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ...helpers import DB, REPO, subprocess_env, wait_until_sync
from ..api.conftest import workers  # noqa: F401 - the API tests' worker processes
from ..api.support import Keys, Workers
from .conftest import QUEUE, enqueue_job, log_in
from .test_dashboard_dead import TASKS, live_state

pytestmark = pytest.mark.processes


@pytest.fixture
def scheduler(database_url: str, schema: str) -> Iterator[subprocess.Popen[str]]:
    """A ``conveyor scheduler`` process (ticking every 0.2 s), stopped after the test."""
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "scheduler", "--tasks", TASKS, "--tick", "0.2", "--lease", "5"],
        cwd=REPO,
        env=subprocess_env(database_url, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


def test_a_running_worker_its_job_and_its_stop_show_live(
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    flag = tmp_path / "release"
    worker = workers.start("--concurrency", "3", tasks=TASKS)
    job_id = enqueue_job(app_url, keys, "dash_block", {"flag": str(flag)})
    wait_until_sync(lambda: live_state(db, job_id) == "running", within=30)

    log_in(page, app_url, keys.viewer)
    page.get_by_role("link", name="Workers").click()
    page.wait_for_url(app_url + "/dashboard/workers")
    expect(page.get_by_role("link", name="Workers")).to_have_attribute("aria-current", "page")
    row = page.locator(f'tr[data-pid="{worker.pid}"]')
    expect(row).to_have_count(1)
    expect(row.locator('[data-state="alive"]')).to_have_text("● Alive")
    expect(row).to_contain_text(QUEUE)
    expect(row.locator("td.num")).to_have_text("3")
    expect(row).to_contain_text("pid " + str(worker.pid))
    held = row.locator(f'[data-job="{job_id}"]')
    expect(held).to_contain_text("dash_block")
    expect(held).to_contain_text("started")
    expect(page.get_by_test_id("scheduler-leader")).to_contain_text("No scheduler running")

    # The job ends: the table refreshes itself and shows the worker idle.
    flag.touch()
    expect(held).to_have_count(0, timeout=15_000)
    expect(row).to_contain_text("idle")

    # A clean stop deletes the worker's row: it leaves the table without a reload.
    worker.terminate()
    worker.communicate(timeout=30)
    expect(row).to_have_count(0, timeout=15_000)
    expect(page.get_by_test_id("no-workers")).to_be_visible()


def test_a_killed_worker_shows_not_alive_once_its_heartbeat_is_old_and_the_leader_shows(
    scheduler: subprocess.Popen[str],
    page: Page,
    app_url: str,
    keys: Keys,
    db: DB,
    workers: Workers,  # noqa: F811
) -> None:
    worker = workers.start(tasks=TASKS)
    log_in(page, app_url, keys.viewer)
    page.goto(app_url + "/dashboard/workers")
    row = page.locator(f'tr[data-pid="{worker.pid}"]')
    expect(row.locator('[data-state="alive"]')).to_be_visible()
    # The scheduler process is elected leader: the page names it (refreshed live).
    expect(page.get_by_test_id("scheduler-leader")).to_contain_text(f"(pid {scheduler.pid})", timeout=20_000)
    expect(page.get_by_test_id("scheduler-leader")).to_contain_text("Leader:")

    # Killed: no clean stop, its row stays. Its last heartbeat moved back past any lease.
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    db.all(
        "UPDATE {schema}.workers SET heartbeat_at = now() - interval '5 minutes' WHERE pid = %s", [worker.pid]
    )
    expect(row.locator('[data-state="dead"]')).to_have_text("✕ Not alive", timeout=15_000)
    expect(row).to_contain_text("silent 5 min")
    expect(row.locator('[data-state="alive"]')).to_have_count(0)
