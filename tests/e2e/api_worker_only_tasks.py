"""A task only the worker processes of the API's tests import: the API knows it by name, from
what the workers recorded (tests.e2e.api.test_api_jobs)."""

from __future__ import annotations

from conveyor import task


@task(queue="api")
def api_worker_only(word: str) -> str:
    return word.upper()
