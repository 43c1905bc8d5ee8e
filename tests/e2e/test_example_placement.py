"""The placement example (examples/placement, docs/examples.md) as its README runs it:
`python -m examples.placement` in a process of its own (app, worker and scheduler), here on
the test's database and schema, with a real SMTP server the test starts.

- Publishing a drive writes its row and its eligibility job together; the job records the
  students who meet the drive's criteria, and the drive's page lists them. Bad input makes
  neither a drive nor a job.
- The Export CSV button enqueues an export; its page follows the job and links the file,
  downloaded through the mounted API under /jobs.
- The nightly schedule (1 AM, Australia/Sydney), triggered now through the mounted API, fans
  out one job per student; the batch's callback e-mails the summary.
- The hourly schedule refreshes the analytics materialized view.
- The dashboard under /jobs, in headless Chromium: sign in with the key the command prints,
  see the placement queues and the nightly schedule.
"""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from playwright.sync_api import Page, expect

from ..helpers import DB, REPO, subprocess_env, url_with_driver, wait_until_sync
from .api.support import bearer
from .dashboard.conftest import browser, log_in, page  # noqa: F401 - fixtures of the dashboard's tests

pytestmark = pytest.mark.processes

OFFICE = "tpo@example.edu"
ACME = {
    "company": "Acme",
    "role": "Graduate engineer",
    "min_cgpa": "7.5",
    "min_tenth_percent": "65",
    "max_backlogs": 0,
    "departments": ["CSE", "IT", "ECE"],
}


class Outbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port, on a loop in a thread of
    its own; keeps the messages it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _start(self) -> asyncio.Server:
        return await self._loop.create_server(lambda: SMTP(self, hostname="localhost"), "127.0.0.1", 0)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Placement:
    """The running command: its address, the admin key it printed, what it printed."""

    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    url: str = ""
    key: str = ""

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if found := re.match(r"Placement: open (http://\S+)/drives", line):
                self.url = found[1]
            if found := re.match(r"Placement: key (cvk_\S+)", line):
                self.key = found[1]

    def http(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **options)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/jobs/api/v1", timeout=30, headers=bearer(self.key))


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    server = Outbox()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def placement_tables(database_url: str) -> Iterator[None]:
    """The app makes its schema `placement` in the test run's database; none is there before."""

    def drop() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS placement CASCADE")

    drop()
    yield
    drop()


@pytest.fixture
def placement(
    database_url: str, schema: str, placement_tables: None, outbox: Outbox, tmp_path: Path
) -> Iterator[Placement]:
    """`python -m examples.placement --port 0` on the test's database and Conveyor schema."""
    env = subprocess_env(
        database_url,
        schema,
        DATABASE_URL=url_with_driver(database_url, "postgresql+psycopg"),
        CONVEYOR_SMTP_HOST="127.0.0.1",
        CONVEYOR_SMTP_PORT=str(outbox.port),
        CONVEYOR_SMTP_SECURITY="none",
        CONVEYOR_SMTP_FROM="placement@example.edu",
        CONVEYOR_EXPORTS_DIR=str(tmp_path / "exports"),
        PLACEMENT_OFFICE_EMAIL=OFFICE,
        PYTHONUNBUFFERED="1",
    )
    del env["CONVEYOR_DATABASE_URL"]  # DATABASE_URL alone, as docs/examples.md says
    command = [sys.executable, "-m", "examples.placement", "--port", "0", "--data-dir", str(tmp_path)]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    running = Placement(process)
    reader = threading.Thread(target=running.read, name="placement-output", daemon=True)
    reader.start()
    try:
        wait_until_sync(lambda: bool(running.key) or process.poll() is not None, within=60)
        assert running.key, "".join(running.output)
        # Up once the worker has registered and the scheduler has written the schedules.
        db = DB(database_url, schema)
        wait_until_sync(
            lambda: (
                process.poll() is not None
                or (
                    db.one("SELECT count(*) FROM {schema}.workers") > 0
                    and db.one("SELECT count(*) FROM {schema}.schedules") == 2
                )
            ),
            within=30,
        )
        assert process.poll() is None, "".join(running.output)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(30)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()
    output = "".join(running.output)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output


def publish(placement: Placement, drive: dict[str, Any]) -> dict[str, Any]:
    with placement.http() as http:
        response = http.post("/drives", json=drive)
    assert response.status_code == 201, response.text
    published: dict[str, Any] = response.json()
    return published


def result(placement: Placement, job_id: int) -> Any:
    """The job's result, once it completed (the mounted API's long poll)."""
    with placement.api() as api:
        response = api.get(f"/jobs/{job_id}/result", params={"timeout": 30})
    assert response.status_code == 200, response.text
    return response.json()["result"]


def students(db: DB) -> list[dict[str, Any]]:
    columns = ("id", "roll_no", "department", "cgpa", "tenth_percent", "twelfth_percent", "backlogs")
    rows = db.all(
        "SELECT id, roll_no, department, cgpa, tenth_percent, twelfth_percent, backlogs"
        " FROM placement.students ORDER BY id"
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def meets(student: dict[str, Any], drive: dict[str, Any]) -> bool:
    """The drive's criteria, as the test reads them (the oracle for the job's SQL)."""
    return (
        student["cgpa"] >= Decimal(drive["min_cgpa"])
        and student["tenth_percent"] >= Decimal(drive.get("min_tenth_percent", 0))
        and student["twelfth_percent"] >= Decimal(drive.get("min_twelfth_percent", 0))
        and student["backlogs"] <= drive.get("max_backlogs", 0)
        and (not drive.get("departments") or student["department"] in drive["departments"])
    )


def eligible(db: DB, drive_id: int) -> set[int]:
    rows = db.all("SELECT student_id FROM placement.eligibility WHERE drive_id = %s", [drive_id])
    return {row[0] for row in rows}


def jobs(db: DB, task: str, state: str | None = None) -> int:
    query = "SELECT count(*) FROM {schema}.job_list WHERE task = %s AND (%s::text IS NULL OR state = %s)"
    return int(db.one(query, [task, state, state]))


def test_a_published_drive_gets_its_eligible_students_and_they_export_to_csv(
    placement: Placement, db: DB
) -> None:
    everyone = students(db)
    assert len(everyone) == 48
    acme = publish(placement, ACME)
    # The drive and its job were committed together: one filter job, for this drive.
    assert db.one(
        "SELECT task, args ->> 'drive_id' FROM {schema}.job_list WHERE id = %s", [acme["eligibility_job"]]
    ) == ("placement.filter_eligible", str(acme["id"]))
    assert (
        db.one("SELECT eligibility_job FROM placement.drives WHERE id = %s", [acme["id"]])
        == (acme["eligibility_job"])
    )

    # The page's form: urlencoded, departments repeated; answered with the drive's page.
    beta = {
        "company": "Beta & Sons",
        "role": "Analyst",
        "min_cgpa": "8",
        "max_backlogs": 1,
        "departments": ["ECE", "MECH"],
    }
    with placement.http() as http:
        form = http.post("/drives", data=beta)
        assert form.status_code == 303, form.text
        beta_id = int(form.headers["location"].rsplit("/", 1)[1])
        # Refused input makes neither a drive nor a job.
        refused = http.post("/drives", json={**ACME, "min_cgpa": "11", "departments": ["LAW"]})
        assert refused.status_code == 422, refused.text
        assert len(refused.json()["detail"]) == 2
        refused_form = http.post("/drives", data={"company": "", "role": "x", "min_cgpa": "7"})
        assert refused_form.status_code == 422
        assert "company" in refused_form.text
    assert db.one("SELECT count(*) FROM placement.drives") == 2
    assert jobs(db, "placement.filter_eligible") == 2

    assert result(placement, acme["eligibility_job"]) == {
        "drive_id": acme["id"],
        "eligible": sum(meets(s, ACME) for s in everyone),
    }
    expected = {s["id"] for s in everyone if meets(s, ACME)}
    assert 0 < len(expected) < len(everyone)
    assert eligible(db, acme["id"]) == expected
    beta_job = db.one("SELECT eligibility_job FROM placement.drives WHERE id = %s", [beta_id])
    result(placement, beta_job)
    assert eligible(db, beta_id) == {s["id"] for s in everyone if meets(s, beta)}

    with placement.http() as http:
        shown = http.get(f"/drives/{acme['id']}").text
        assert f"{len(expected)} student(s)" in shown
        assert set(re.findall(r"<td>(21[A-Z]+\d{3})</td>", shown)) == {
            s["roll_no"] for s in everyone if s["id"] in expected
        }
        assert "Beta &amp; Sons" in http.get("/drives").text

        # Export CSV: the button's POST, then its page until the job has finished.
        started = http.post("/exports")
        assert started.status_code == 303, started.text
        progress_page = started.headers["location"]
        links: list[str] = []

        def linked() -> bool:
            links.extend(re.findall(r'href="/jobs/dashboard/exports/([^"]+)"', http.get(progress_page).text))
            return bool(links)

        wait_until_sync(linked, within=30, interval=0.1)
        # The page's link is the dashboard's (a signed-in browser: see the dashboard test);
        # without a session it leads to the login page.
        assert http.get(f"/jobs/dashboard/exports/{links[0]}").status_code == 303
        api_path = f"/jobs/api/v1/exports/{links[0]}"
        assert http.get(api_path).status_code == 401  # the mounted API: an API key or nothing
        download = http.get(api_path, headers=bearer(placement.key))
        assert download.status_code == 200, download.text
        assert download.headers["content-type"].startswith("text/csv")

    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert {(int(r["drive_id"]), r["roll_no"]) for r in rows} == {
        (drive, s["roll_no"])
        for drive, chosen in ((acme["id"], expected), (beta_id, eligible(db, beta_id)))
        for s in everyone
        if s["id"] in chosen
    }
    assert {r["company"] for r in rows} == {"Acme", "Beta & Sons"}
    export_job = int(progress_page.rsplit("/", 1)[1])
    assert result(placement, export_job)["rows"] == len(rows)


def test_hostile_drives_are_refused_or_shown_as_text(placement: Placement, db: DB) -> None:
    script = "<script>alert(1)</script>"
    with placement.http() as http:
        for body in ([ACME], "not json", {**ACME, "company": "a\x00b"}, {**ACME, "role": "x\x00"}):
            refused = (
                http.post("/drives", json=body)
                if not isinstance(body, str)
                else http.post("/drives", content=body, headers={"content-type": "application/json"})
            )
            assert refused.status_code == 422, (body, refused.text)
        form = http.post("/drives", data={"company": "a\x00b", "role": "x", "min_cgpa": "7"})
        assert form.status_code == 422, form.text
        shown = publish(placement, {**ACME, "company": script, "role": '"><img src=x onerror=alert(1)>'})
        for path in ("/drives", f"/drives/{shown['id']}"):
            page_text = http.get(path).text
            assert script not in page_text
            assert "<img" not in page_text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_text
        for path in ("/drives/99999999999999999999", "/exports/99999999999999999999"):
            assert http.get(path).status_code == 404, path
    assert db.one("SELECT count(*) FROM placement.drives") == 1
    assert jobs(db, "placement.filter_eligible") == 1


def test_the_nightly_evaluation_fans_out_per_student_and_emails_a_summary(
    placement: Placement, db: DB, outbox: Outbox
) -> None:
    acme = publish(placement, ACME)
    result(placement, acme["eligibility_job"])
    everyone = students(db)
    with placement.api() as api:
        nightly = api.get("/schedules/nightly-evaluation").json()
        assert (nightly["cron"], nightly["timezone"]) == ("0 1 * * *", "Australia/Sydney")
        assert datetime.fromisoformat(nightly["next_fire_local"]).strftime("%H:%M") == "01:00"
        triggered = api.post("/schedules/nightly-evaluation/trigger")
        assert triggered.status_code == 201, triggered.text
    fanned_out = result(placement, triggered.json()["job_id"])
    assert fanned_out["students"] == len(everyone)

    wait_until_sync(lambda: len(outbox.messages) > 0, within=60, interval=0.1)
    assert jobs(db, "placement.evaluate_student", "completed") == len(everyone)
    assert jobs(db, "placement.evaluate_student") == len(everyone)
    assert jobs(db, "placement.summarize_evaluation", "completed") == 1
    day = fanned_out["day"]
    with_drives = sum(meets(s, ACME) for s in everyone)
    evaluated = db.all("SELECT student_id, eligible_drives FROM placement.evaluations WHERE day = %s", [day])
    assert len(evaluated) == len(everyone)
    assert sum(count for _, count in evaluated) == with_drives

    [message] = outbox.messages
    assert message["To"] == OFFICE
    assert message["From"] == "placement@example.edu"
    assert (
        message["Subject"] == f"Nightly evaluation {day}: {with_drives} of {len(everyone)} students eligible"
    )
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert f"{len(everyone)} students evaluated, {with_drives} eligible for at least one drive." in text
    assert f"Jobs: {len(everyone)} completed, 0 failed, of {len(everyone)}." in text


def test_the_hourly_refresh_brings_the_analytics_view_up_to_date(placement: Placement, db: DB) -> None:
    acme = publish(placement, ACME)
    result(placement, acme["eligibility_job"])
    everyone = students(db)

    def shown() -> dict[str, int]:
        with placement.http() as http:
            page = http.get("/analytics").text
        found = re.findall(r'data-department="(\w+)">.*?<td data-eligible>(\d+)</td>', page, re.S)
        return {department: int(count) for department, count in found}

    # Made when the tables were, before any drive: nobody eligible yet, until a refresh.
    assert shown() == dict.fromkeys(("CIVIL", "CSE", "ECE", "EEE", "IT", "MECH"), 0)
    with placement.api() as api:
        hourly = api.get("/schedules/hourly-department-stats").json()
        assert (hourly["cron"], hourly["args"]) == ("0 * * * *", {"view": "placement.department_stats"})
        triggered = api.post("/schedules/hourly-department-stats/trigger")
        assert triggered.status_code == 201, triggered.text
    refreshed = result(placement, triggered.json()["job_id"])
    assert refreshed["view"] == "placement.department_stats"
    assert refreshed["concurrently"] is True  # populated, with a unique index: readers never wait
    assert refreshed["rows"] == 6
    expected = dict.fromkeys(("CIVIL", "CSE", "ECE", "EEE", "IT", "MECH"), 0)
    for student in everyone:
        expected[student["department"]] += meets(student, ACME)
    assert shown() == expected
    assert sum(expected.values()) > 0


def test_the_dashboard_under_jobs_shows_the_placement_queues_and_schedules(
    placement: Placement,
    page: Page,  # noqa: F811 - the dashboard tests' fixture
) -> None:
    publish(placement, ACME)
    log_in(page, placement.url + "/jobs", placement.key)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for queue in ("eligibility", "evaluations", "emails", "exports"):
        expect(page.locator(f'tr[data-queue="{queue}"]')).to_be_visible()
    page.goto(placement.url + "/jobs/dashboard/schedules")
    nightly = page.locator('tr[data-schedule="nightly-evaluation"]')
    expect(nightly).to_contain_text("0 1 * * *")
    expect(nightly).to_contain_text("Australia/Sydney")
    expect(page.locator('tr[data-schedule="hourly-department-stats"]')).to_be_visible()
    # The app's Export CSV button, then its page's link, downloaded by the signed-in browser.
    page.goto(placement.url + "/drives")
    page.get_by_role("button", name="Export CSV").click()
    link = page.locator("#export a[download]")
    expect(link).to_be_visible(timeout=30_000)
    with page.expect_download() as started:
        link.click()
    saved = Path(started.value.path())
    header = saved.read_text().splitlines()[0]
    assert "roll_no" in header
    assert "company" in header
