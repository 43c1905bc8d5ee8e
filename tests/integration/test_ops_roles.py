"""The service layer refuses a caller whose role is too low, without HTTP: every operation of
conveyor.ops, called with a principal one role below the one it needs, raises ForbiddenError
before it reads or writes anything; called with the role it needs, it is not refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from conveyor import Conveyor, JobRequest, Registry
from conveyor.errors import ConveyorError, ForbiddenError
from conveyor.limits import QueueLimits
from conveyor.ops import dead_jobs, jobs, queues, retention, schedules, status
from conveyor.ops.roles import Principal, Role

from ..helpers import DB

VIEWER, OPERATOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN
Call = Callable[[Conveyor, Principal], Awaitable[Any]]

# Every operation the HTTP API or the CLI calls, with the role the documentation gives it.
OPERATIONS: list[tuple[str, Role, Call]] = [
    ("create_queue", OPERATOR, lambda c, p: queues.create_queue(c, p, "fresh")),
    ("list_queues", VIEWER, lambda c, p: queues.list_queues(c, p)),
    ("get_queue", VIEWER, lambda c, p: queues.get_queue(c, p, "q")),
    ("pause_queue", OPERATOR, lambda c, p: queues.pause_queue(c, p, "q")),
    ("resume_queue", OPERATOR, lambda c, p: queues.resume_queue(c, p, "q")),
    ("queue_limits", VIEWER, lambda c, p: queues.queue_limits(c, p, "q")),
    ("set_queue_limits", ADMIN, lambda c, p: queues.set_queue_limits(c, p, "q", QueueLimits(concurrency=2))),
    ("list_tasks", VIEWER, lambda c, p: queues.list_tasks(c, p)),
    ("pause_task", OPERATOR, lambda c, p: queues.pause_task(c, p, "work")),
    ("resume_task", OPERATOR, lambda c, p: queues.resume_task(c, p, "work")),
    ("pauses", VIEWER, lambda c, p: queues.pauses(c, p)),
    ("pause_all", OPERATOR, lambda c, p: queues.pause_all(c, p)),
    ("resume_all", OPERATOR, lambda c, p: queues.resume_all(c, p)),
    ("search_jobs", VIEWER, lambda c, p: jobs.search_jobs(c, p)),
    ("history", VIEWER, lambda c, p: jobs.history(c, p)),
    ("clean_history", ADMIN, lambda c, p: jobs.clean_history(c, p, timedelta(days=1), budget=1)),
    ("get_job", VIEWER, lambda c, p: jobs.get_job(c, p, 1)),
    ("enqueue", OPERATOR, lambda c, p: jobs.enqueue(c, p, JobRequest("work", queue="q"))),
    ("enqueue_many", OPERATOR, lambda c, p: jobs.enqueue_many(c, p, [JobRequest("work", queue="q")])),
    ("cancel", OPERATOR, lambda c, p: jobs.cancel(c, p, 1)),
    ("abort", OPERATOR, lambda c, p: jobs.abort(c, p, 1)),
    ("run_now", OPERATOR, lambda c, p: jobs.run_now(c, p, 1)),
    ("delete_job", ADMIN, lambda c, p: jobs.delete_job(c, p, 1)),
    ("retry_job", OPERATOR, lambda c, p: jobs.retry_job(c, p, 1)),
    ("await_result", VIEWER, lambda c, p: jobs.await_result(c, p, 1, 0)),
    ("dead_letters", VIEWER, lambda c, p: dead_jobs.dead_letters(c, p)),
    ("get_dead", VIEWER, lambda c, p: dead_jobs.get_dead(c, p, 1)),
    ("retry_dead", OPERATOR, lambda c, p: dead_jobs.retry_dead(c, p, 1)),
    ("retry_many", OPERATOR, lambda c, p: dead_jobs.retry_many(c, p, queue="q")),
    ("purge", ADMIN, lambda c, p: dead_jobs.purge(c, p, everything=True)),
    ("list_schedules", VIEWER, lambda c, p: schedules.list_schedules(c, p)),
    ("get_schedule", VIEWER, lambda c, p: schedules.get_schedule(c, p, "s")),
    (
        "create_schedule",
        ADMIN,
        lambda c, p: schedules.create_schedule(c, p, "t", {"cron": "* * * * *", "task": "work"}),
    ),
    ("update_schedule", ADMIN, lambda c, p: schedules.update_schedule(c, p, "s", {"cron": "0 * * * *"})),
    ("pause_schedule", OPERATOR, lambda c, p: schedules.pause_schedule(c, p, "s")),
    ("resume_schedule", OPERATOR, lambda c, p: schedules.resume_schedule(c, p, "s")),
    ("trigger_schedule", OPERATOR, lambda c, p: schedules.trigger_schedule(c, p, "s")),
    ("remove_schedule", ADMIN, lambda c, p: schedules.remove_schedule(c, p, "s")),
    ("schedule_fires", VIEWER, lambda c, p: schedules.schedule_fires(c, p, "s")),
    ("show_retention", VIEWER, lambda c, p: retention.show(c, p)),
    ("set_retention", ADMIN, lambda c, p: retention.set_retention(c, p, "*", completed_max=5)),
    ("apply_retention", ADMIN, lambda c, p: retention.apply(c, p, budget=1)),
    ("scheduler_status", VIEWER, lambda c, p: status.scheduler_status(c, p)),
    ("workers", VIEWER, lambda c, p: status.workers(c, p)),
]

TABLES = ("jobs", "job_history", "dead_jobs", "queues", "schedules", "schedule_fires", "retention", "pauses")


@pytest.fixture
def registry() -> Registry:
    registry = Registry()

    @registry.task(name="work", queue="q")
    def work() -> None:
        pass

    return registry


def snapshot(db: DB) -> dict[str, list[Any]]:
    return {
        table: [row[0] for row in db.all(f"SELECT to_jsonb(t)::text FROM {{schema}}.{table} t ORDER BY 1")]  # noqa: S608 - a fixed table name
        for table in TABLES
    }


async def test_every_operation_refuses_the_role_below_its_own_and_changes_nothing(
    client: Conveyor, db: DB
) -> None:
    await client.enqueue("work", delay=timedelta(hours=1))  # job 1, queue q
    await client.create_schedule("s", "0 3 * * *", "work")
    before = snapshot(db)
    refused = 0
    for name, role, call in OPERATIONS:
        if role == Role.VIEWER:
            continue  # no role is below it
        below = Principal(Role(role - 1), "lower")
        with pytest.raises(ForbiddenError, match=f"needs the {role.label} role") as caught:
            await call(client, below)
        assert "'lower'" in str(caught.value), name
        refused += 1
    assert refused == sum(1 for _, role, _ in OPERATIONS if role != Role.VIEWER)
    assert snapshot(db) == before


@pytest.mark.parametrize(("name", "role", "call"), OPERATIONS, ids=[name for name, _, _ in OPERATIONS])
async def test_the_role_an_operation_needs_is_enough(
    client: Conveyor, name: str, role: Role, call: Call
) -> None:
    await client.enqueue("work", delay=timedelta(hours=1))
    await client.create_schedule("s", "0 3 * * *", "work")
    try:
        await call(client, Principal(role, "just-enough"))
    except ForbiddenError:
        raise
    except ConveyorError:
        pass  # refused for what it asks (job 1 is not dead, ...), not for who asks
