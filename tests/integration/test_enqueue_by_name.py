"""Enqueueing a task this process never imported, known only by the row a worker recorded in
the tasks table (as the HTTP API does): every enqueue option, and the checks the registry
still allows (arguments a JSON object, queues that exist, names someone knows), each a
clear refusal that writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import Conveyor, Registry, SyncConveyor
from conveyor.errors import ArgumentsError, InvalidOptionError, UnknownQueueError, UnknownTaskError
from conveyor.queue.enqueue import JobRequest

from ..helpers import DB


def record(db: DB, name: str, queue: str, priority: int = 2, max_attempts: int = 3) -> None:
    """What a worker importing the task writes when it starts (sync_tasks, and its queue)."""
    db.all("select {schema}.create_queue(%s)", [queue])
    db.all(
        "insert into {schema}.tasks (name, queue, priority, max_attempts, timeout_seconds) values (%s, %s, %s, %s, 30)",
        [name, queue, priority, max_attempts],
    )


def job(db: DB, job_id: int) -> dict[str, Any]:
    rows = db.all(
        "select queue, task, priority, max_attempts, args, state, unique_key, key, meta, after_id"
        " from {schema}.jobs where id = %s",
        [job_id],
    )
    names = [
        "queue",
        "task",
        "priority",
        "max_attempts",
        "args",
        "state",
        "unique_key",
        "key",
        "meta",
        "after_id",
    ]
    return dict(zip(names, rows[0], strict=True))


async def test_every_enqueue_option_works_for_a_task_known_by_name_only(
    database_url: str, schema: str, db: DB
) -> None:
    record(db, "thumbnail", "media", priority=1, max_attempts=7)
    await_later = datetime.now(UTC) + timedelta(hours=1)
    async with Conveyor(database_url, schema=schema, registry=Registry()) as client:  # imports no task
        plain = await client.enqueue("thumbnail", {"path": "a.png"})
        tuned = await client.enqueue(
            "thumbnail",
            {"path": "b.png", "key": "ignored-as-key"},
            priority="critical",
            max_attempts=2,
            unique_key="thumb-b",
            key="tenant-7",
            meta={"source": "api"},
        )
        again = await client.enqueue("thumbnail", {"path": "b2.png"}, unique_key="thumb-b")
        delayed = await client.enqueue("thumbnail", {}, delay=timedelta(minutes=5))
        timed = await client.enqueue("thumbnail", {}, run_at=await_later)
        chained = await client.enqueue("thumbnail", {"path": "c.png"}, after=plain)
        await client.create_queue("other")
        moved = await client.enqueue("thumbnail", {}, queue="other")
        many = await client.enqueue_many(
            [JobRequest("thumbnail", {"n": n}, priority="low") for n in range(3)]
        )

    assert job(db, plain) == {
        "queue": "media", "task": "thumbnail", "priority": 1, "max_attempts": 7, "args": {"path": "a.png"},
        "state": "available", "unique_key": None, "key": None, "meta": None, "after_id": None,
    }  # fmt: skip
    assert job(db, tuned) | {"args": None} == {
        "queue": "media", "task": "thumbnail", "priority": 0, "max_attempts": 2, "args": None,
        "state": "available", "unique_key": "thumb-b", "key": "tenant-7", "meta": {"source": "api"}, "after_id": None,
    }  # fmt: skip
    assert again == tuned  # the live job holding the unique key
    assert job(db, delayed)["state"] == job(db, timed)["state"] == "scheduled"
    assert (job(db, chained)["state"], job(db, chained)["after_id"]) == ("blocked", plain)
    assert job(db, moved)["queue"] == "other"
    assert [job(db, i)["priority"] for i in many] == [3, 3, 3]


async def test_what_the_registry_cannot_check_is_left_to_the_worker_and_the_rest_is_refused(
    database_url: str, schema: str, db: DB
) -> None:
    record(db, "thumbnail", "media")
    registry = Registry()

    @registry.task
    def local(width: int) -> None:
        pass

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        # Known by name only: any JSON object goes (the worker checks it against the signature).
        odd = await client.enqueue("thumbnail", {"anything": [1, {"nested": None}]})
        refusals: list[tuple[Any, type[Exception], str]] = [
            (lambda: client.enqueue("thumbnail", [1, 2]), ArgumentsError, "arguments must be a JSON object"),
            (lambda: client.enqueue("thumbnail", {"a": object()}), ArgumentsError, "arguments are not JSON"),
            (
                lambda: client.enqueue("thumbnail", {"a": float("nan")}),
                ArgumentsError,
                "arguments are not JSON",
            ),
            (
                lambda: client.enqueue("thumbnail", {}, queue="nowhere"),
                UnknownQueueError,
                "unknown queue 'nowhere'",
            ),
            (lambda: client.enqueue("thumbnail", {}, priority="urgent"), InvalidOptionError, "priority"),
            (lambda: client.enqueue("thumbnail", {}, max_attempts=0), InvalidOptionError, "max_attempts"),
            (
                lambda: client.enqueue("thumbnial", {}),
                UnknownTaskError,
                "unknown task 'thumbnial'.*nor has any worker",
            ),
            (lambda: client.enqueue("", {}), UnknownTaskError, "unknown task ''"),
            (lambda: client.enqueue("thumb\x00nail", {}), UnknownTaskError, "unknown task"),
            # A lone surrogate (what a JSON "\\ud800" escape decodes to) cannot be sent to PostgreSQL.
            (lambda: client.enqueue("thumb\ud800", {}), UnknownTaskError, "unknown task"),
            (
                lambda: client.enqueue("thumbnail", {}, unique_key="u\ud800"),
                InvalidOptionError,
                "lone surrogate",
            ),
            (lambda: client.enqueue("thumbnail", {}, key="k\ud800"), InvalidOptionError, "lone surrogate"),
            (lambda: client.enqueue("thumbnail", {"a": "\ud800"}), ArgumentsError, "arguments are not JSON"),
            (
                lambda: client.enqueue("thumbnail", {}, meta={"m": "\ud800"}),
                InvalidOptionError,
                "meta is not JSON",
            ),
            # A task imported here is checked against its signature.
            (lambda: client.enqueue("local", {"height": 1}), ArgumentsError, "unexpected argument 'height'"),
            (lambda: client.enqueue("local", {"width": "wide"}), ArgumentsError, "width"),
            # One bad request in a batch enqueues none of it.
            (
                lambda: client.enqueue_many([JobRequest("thumbnail", {}), JobRequest("nobody", {})]),
                UnknownTaskError,
                "unknown task 'nobody'",
            ),
            (
                lambda: client.enqueue_many([JobRequest("thumbnail", {}), JobRequest("thumbnail", [1])]),
                ArgumentsError,
                "arguments must be a JSON object",
            ),
        ]
        for call, error, message in refusals:
            with pytest.raises(error, match=message):
                await call()
        assert db.all("select id from {schema}.jobs") == [(odd,)]

        # A task a worker records later is found then: a name no one knew is asked again.
        with pytest.raises(UnknownTaskError):
            await client.enqueue("resize", {})
        record(db, "resize", "media")
        assert await client.enqueue("resize", {}) > odd

    with SyncConveyor(database_url, schema=schema, registry=Registry()) as sync_client:
        assert sync_client.enqueue("thumbnail", {"path": "d.png"}) > odd
        with pytest.raises(ArgumentsError):
            sync_client.enqueue("thumbnail", [1])  # type: ignore[arg-type]
