"""Tasks and schedules that give the dashboard something to show: the seeds' everyday jobs
(welcome e-mails, webhooks of which some always fail, slow exports that report progress, a
nightly aggregation and a materialized-view refresh on cron). ``scripts/dashboard_screenshots.py``
runs them to take the screenshots in docs/; they do no real work."""

from __future__ import annotations

import asyncio
import random

from conveyor import JobContext, schedule, task


@task(queue="emails", max_attempts=5)
async def send_welcome_email(to: str, ctx: JobContext) -> dict[str, str]:
    ctx.progress(30, "rendered")
    await asyncio.sleep(random.uniform(0.2, 1.2))
    ctx.progress(100, "sent")
    return {"sent": to}


@task(queue="webhooks", max_attempts=1)
async def deliver_webhook(url: str, event: str) -> int:
    await asyncio.sleep(random.uniform(0.1, 0.5))
    if "unreachable" in url:
        raise ConnectionError(f"POST {url}: connection refused")
    return 200


@task(queue="exports", max_attempts=3)
async def export_csv(report: str, rows: int, ctx: JobContext) -> dict[str, object]:
    for done in range(0, rows + 1, max(rows // 50, 1)):
        ctx.progress(done * 100 // rows, f"{done:,} of {rows:,} rows")
        await asyncio.sleep(1)
    return {"report": report, "rows": rows, "file": f"exports/{report}.csv"}


@task(queue="maintenance")
async def aggregate_day(day: str) -> str:
    await asyncio.sleep(0.5)
    return f"aggregated {day}"


schedule("nightly-aggregation", "0 2 * * *", aggregate_day, {"day": "yesterday"}, timezone="Europe/Berlin")
schedule(
    "hourly-digest",
    "0 * * * *",
    send_welcome_email,
    {"to": "digest@example.com"},
    timezone="America/New_York",
)
