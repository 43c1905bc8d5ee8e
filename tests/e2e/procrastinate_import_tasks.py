"""Conveyor tasks for the procrastinate import tests: the tasks imported jobs are mapped to.

`conveyor` subprocesses import this module with ``--tasks tests.e2e.procrastinate_import_tasks``.
Each run appends one JSON line (task, job id, attempt, args) to a per-process file in the
folder named by CONVEYOR_TEST_LEDGER, so a test sees what ran, how often and with what.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from conveyor import JobContext, task


def note(name: str, ctx: JobContext, args: dict[str, Any]) -> None:
    folder = Path(os.environ["CONVEYOR_TEST_LEDGER"])
    with open(folder / f"{os.getpid()}.log", "a") as ledger:
        ledger.write(
            json.dumps({"task": name, "job": ctx.job_id, "attempt": ctx.attempt, "args": args}) + "\n"
        )


@task(queue="mail")
def send_email(to: str, subject: str, ctx: JobContext) -> None:
    note("send_email", ctx, {"to": to, "subject": subject})


@task(queue="sums")
def add(a: int, b: int, ctx: JobContext) -> int:
    note("add", ctx, {"a": a, "b": b})
    return a + b


@task(queue="reports")
def build_report(report_id: int, ctx: JobContext) -> None:
    """Failed in procrastinate; fixed here, so a retry from the dead-letter queue succeeds."""
    note("build_report", ctx, {"report_id": report_id})
