"""Take the dashboard's screenshots in docs/screenshots/ (light and dark, 1280 px, and the
overview on a phone), from a live installation: a schema of its own, `conveyor api`,
`conveyor worker` and `conveyor scheduler` processes running examples/dashboard_demo.py, and
headless Chromium (/usr/bin/chromium) driven by Playwright.

    .venv/bin/python scripts/dashboard_screenshots.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Takes about a minute; the schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from playwright.sync_api import Page, sync_playwright
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "service"))
sys.path.insert(0, str(REPO))

import examples.dashboard_demo  # noqa: E402, F401 - registers the demo's tasks for enqueueing

from conveyor import Conveyor  # noqa: E402
from conveyor.db import migrations  # noqa: E402
from conveyor.ops.keys import create_key  # noqa: E402
from conveyor.ops.roles import LOCAL_ADMIN  # noqa: E402

TASKS = "examples.dashboard_demo"
CHROMIUM = "/usr/bin/chromium"


async def seed(url: str, schema: str) -> str:
    """An admin key; jobs in four queues (some webhooks bound to fail), one export left waiting."""
    async with Conveyor(url, schema=schema) as client:
        _, key = await create_key(client.db, LOCAL_ADMIN, "screenshots", "admin")
        for i in range(40):
            await client.enqueue("send_welcome_email", {"to": f"user{i}@example.com"}, queue="emails")
        for i in range(16):
            target = "https://hooks.example.net/unreachable" if i % 4 == 0 else "https://hooks.example.com/in"
            await client.enqueue("deliver_webhook", {"url": target, "event": "order.paid"}, queue="webhooks")
        for report in ("orders-2026-11", "customers", "refunds"):
            await client.enqueue("export_csv", {"report": report, "rows": 120_000}, queue="exports")
        return key


def settled(url: str, schema: str, within: float = 120.0) -> None:
    """Wait until the worker has run every e-mail and webhook and the exports are under way."""
    query = sql.SQL(
        "SELECT count(*) FILTER (WHERE queue IN ('emails', 'webhooks')),"
        " count(*) FILTER (WHERE queue = 'exports' AND state = 'running') FROM {}.jobs"
    ).format(sql.Identifier(schema))
    deadline = time.monotonic() + within
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(query).fetchone()
            if row == (0, 3):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the demo did not settle within {within:.0f} s: {row}")
            time.sleep(0.5)  # polling the database for the condition, not waiting out a timing


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args], env=env, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def shoot(page: Page, base: str, out: Path, name: str, path: str) -> None:
    page.goto(base + path)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / f"{name}.png"))  # the first screenful
    print("  ", out / f"{name}.png", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="conveyor_screenshots")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    url, schema = args.database_url, args.schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    migrations.upgrade(url, schema)
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "CONVEYOR_SCHEMA": schema, "PYTHONPATH": str(REPO)}
    processes = [start("scheduler", "--tasks", TASKS, env=env)]
    try:
        key = asyncio.run(seed(url, schema))
        processes.append(start("api", "--port", str(args.port), "--tasks", TASKS, env=env))
        processes.append(
            start(
                "worker",
                "--tasks",
                TASKS,
                "--queues",
                "emails,webhooks,exports",
                "--concurrency",
                "4",
                env=env,
            )
        )
        base = f"http://127.0.0.1:{args.port}"
        settled(url, schema)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SELECT {}.pause_queue('webhooks')").format(sql.Identifier(schema)))
            row = conn.execute(
                sql.SQL(
                    "SELECT id FROM {}.jobs WHERE task = 'export_csv' AND state = 'running' LIMIT 1"
                ).format(sql.Identifier(schema))
            ).fetchone()
        export_id = row[0] if row else None
        pages = [
            ("overview", "/"),
            ("queue", "/dashboard/queues/emails"),
            ("jobs", "/dashboard/jobs"),
            ("schedules", "/dashboard/schedules"),
            ("dead-letters", "/dashboard/dead"),
            ("workers", "/dashboard/workers"),
        ]
        if export_id is not None:
            pages.append(("job", f"/dashboard/jobs/{export_id}"))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--headless"]
            )
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
                page = context.new_page()
                page.goto(base + "/login")
                page.get_by_label("API key").fill(key)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(re.compile(r".*/$"))
                for _ in range(7):  # the chart counts at most 10 uncounted minutes a read: fill the hour
                    page.goto(base + "/")
                for name, path in pages:
                    shoot(page, base, out, f"{name}-{scheme}", path)
                context.close()
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, color_scheme="light", is_mobile=True
            )
            page = phone.new_page()
            page.goto(base + "/login")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r".*/$"))
            shoot(page, base, out, "overview-phone", "/")
            browser.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
