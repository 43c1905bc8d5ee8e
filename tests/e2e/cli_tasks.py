"""Tasks for the CLI end-to-end tests.

`conveyor` subprocesses import this module with ``--tasks tests.e2e.cli_tasks`` (the repo
root is on their PYTHONPATH); the pytest process itself never imports it.
"""

from __future__ import annotations

from conveyor import task


@task
def add(a: int, b: int = 0) -> int:
    return a + b


@task(queue="emails", priority="high")
def send_email(to: str, subject: str = "hello") -> str:
    return f"sent {subject!r} to {to}"


@task
def explode(message: str) -> None:
    raise RuntimeError(message)
