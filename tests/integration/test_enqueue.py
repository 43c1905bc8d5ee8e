"""Enqueue from Python on Conveyor's own pool: defaults, overrides, delays, unique keys,
queues, bulk enqueue by COPY and bad input (each refused with a clear error, nothing written)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from conveyor import (
    ArgumentsError,
    Conveyor,
    FrozenClock,
    InvalidOptionError,
    JobRequest,
    Registry,
    SyncConveyor,
    UnknownQueueError,
    UnknownTaskError,
)
from conveyor.settings import MAX_ARGS_BYTES

from ..helpers import DB, wait_until

T0 = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)


@pytest.fixture
def tasks(registry: Registry) -> Registry:
    @registry.task(queue="mail", priority="high", max_attempts=3)
    async def mail(to: str, n: int = 0) -> None:
        pass

    @registry.task
    async def plain(n: int) -> None:
        pass

    @registry.task
    async def anything(value: Any) -> None:
        pass

    @registry.task
    async def blob(data: str) -> None:
        pass

    return registry


@pytest.fixture
async def frozen(database_url: str, schema: str, tasks: Registry) -> Any:
    clock = FrozenClock(T0)
    async with Conveyor(database_url, schema=schema, registry=tasks, clock=clock) as client:
        yield client, clock


def _queues(db: DB) -> list[str]:
    return [row[0] for row in db.all("select name from {schema}.queues order by name")]


async def test_task_defaults_are_stored_in_the_row(client: Conveyor, tasks: Registry, db: DB) -> None:
    assert _queues(db) == ["default"]
    mail_id = await client.enqueue("mail", {"to": "a@example.com"})
    plain_id = await client.enqueue(tasks.get("plain"), {"n": 1})  # type: ignore[arg-type]

    assert db.all(
        "select queue, task, args, state, priority, max_attempts, attempt, unique_key"
        " from {schema}.jobs where id = %s",
        [mail_id],
    ) == [("mail", "mail", {"to": "a@example.com"}, "available", 1, 3, 0, None)]
    assert db.all(
        "select queue, task, args, state, priority, max_attempts, attempt, unique_key"
        " from {schema}.jobs where id = %s",
        [plain_id],
    ) == [("default", "plain", {"n": 1}, "available", 2, 5, 0, None)]
    # The queue the task declares was created by its first enqueue.
    assert _queues(db) == ["default", "mail"]
    assert db.one("select run_at = enqueued_at from {schema}.jobs where id = %s", [mail_id]) is True


async def test_options_override_the_task_defaults(client: Conveyor, tasks: Registry, db: DB) -> None:
    await client.create_queue("bulk")
    first = await client.enqueue("mail", {"to": "b"}, queue="bulk", priority="low", max_attempts=9)
    second = await client.enqueue("mail", {"to": "c", "n": 2}, queue="default", priority=0, max_attempts=1)
    third = await client.enqueue("plain", {"n": 3}, priority="critical")
    rows = db.all(
        "select id, queue, priority, max_attempts from {schema}.jobs where id = any(%s) order by id",
        [[first, second, third]],
    )
    assert rows == [(first, "bulk", 3, 9), (second, "default", 0, 1), (third, "default", 0, 5)]
    # The task's own queue was never used, so it was never made.
    assert _queues(db) == ["bulk", "default"]


async def test_delay_and_run_at_set_the_time_and_state(frozen: Any, db: DB) -> None:
    client, clock = frozen
    cases = [
        ({"delay": 90}, T0 + timedelta(seconds=90), "scheduled"),
        ({"delay": 0.5}, T0 + timedelta(seconds=0.5), "scheduled"),
        ({"delay": timedelta(hours=2)}, T0 + timedelta(hours=2), "scheduled"),
        ({"run_at": T0 + timedelta(days=1)}, T0 + timedelta(days=1), "scheduled"),
        ({"run_at": T0 - timedelta(hours=1)}, T0 - timedelta(hours=1), "available"),
        ({"run_at": T0}, T0, "available"),
        ({"delay": 0}, T0, "available"),
        ({}, T0, "available"),
    ]
    for n, (options, run_at, state) in enumerate(cases):
        job_id = await client.enqueue("plain", {"n": n}, **options)
        row = db.all("select run_at, enqueued_at, state from {schema}.jobs where id = %s", [job_id])
        assert row == [(run_at, T0, state)], options

    # The clock moves, and the next job is timed from it.
    clock.advance(3600)
    job_id = await client.enqueue("plain", {"n": 99}, delay=60)
    assert db.all("select run_at, enqueued_at from {schema}.jobs where id = %s", [job_id]) == [
        (T0 + timedelta(seconds=3660), T0 + timedelta(seconds=3600))
    ]

    # A time zone other than UTC is the same instant.
    berlin = datetime(2031, 3, 14, 17, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    job_id = await client.enqueue("plain", {"n": 100}, run_at=berlin)
    assert db.one("select run_at from {schema}.jobs where id = %s", [job_id]) == berlin

    count = db.one("select count(*) from {schema}.jobs")
    with pytest.raises(InvalidOptionError, match="run_at must carry a time zone"):
        await client.enqueue("plain", {"n": 1}, run_at=datetime(2031, 1, 1))
    with pytest.raises(InvalidOptionError, match="give run_at or delay, not both"):
        await client.enqueue("plain", {"n": 1}, run_at=T0, delay=5)
    with pytest.raises(InvalidOptionError, match="delay must not be negative"):
        await client.enqueue("plain", {"n": 1}, delay=-1)
    with pytest.raises(InvalidOptionError, match="delay must be seconds or a timedelta"):
        await client.enqueue("plain", {"n": 1}, delay="soon")
    assert db.one("select count(*) from {schema}.jobs") == count


async def test_unique_key_returns_the_live_holder_and_is_free_once_it_finishes(
    client: Conveyor, tasks: Registry, db: DB, start_worker: Any
) -> None:
    first = await client.enqueue("plain", {"n": 1}, unique_key="invoice-7")
    again = await client.enqueue("plain", {"n": 2}, unique_key="invoice-7", priority="critical")
    other = await client.enqueue("plain", {"n": 3}, unique_key="invoice-8")
    assert again == first
    assert other != first
    assert db.all("select id, args, priority from {schema}.jobs where unique_key = 'invoice-7'") == [
        (first, {"n": 1}, 2)
    ]
    assert db.one("select count(*) from {schema}.jobs") == 2

    @tasks.task(max_attempts=1)
    async def fails() -> None:
        raise RuntimeError("no")

    dying = await client.enqueue("fails", unique_key="dies-1")
    assert await client.enqueue("fails", unique_key="dies-1") == dying

    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 2)
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)

    # Finished or dead, the holder no longer holds the key.
    fresh = await client.enqueue("plain", {"n": 4}, unique_key="invoice-7")
    assert fresh not in (first, other)
    reborn = await client.enqueue("fails", unique_key="dies-1")
    assert reborn != dying
    assert db.all("select id, args, unique_key from {schema}.jobs order by id") == [
        (fresh, {"n": 4}, "invoice-7"),
        (reborn, {}, "dies-1"),
    ]
    assert db.one("select unique_key from {schema}.job_history where id = %s", [first]) == "invoice-7"

    with pytest.raises(InvalidOptionError, match="unique_key must be 1 to 512 characters"):
        await client.enqueue("plain", {"n": 5}, unique_key="")
    with pytest.raises(InvalidOptionError, match="unique_key must be 1 to 512 characters"):
        await client.enqueue("plain", {"n": 5}, unique_key="k" * 513)
    assert db.one("select count(*) from {schema}.jobs") == 2


async def test_unknown_queue_is_refused_and_nothing_is_written(
    client: Conveyor, tasks: Registry, db: DB
) -> None:
    with pytest.raises(UnknownQueueError) as refused:
        await client.enqueue("plain", {"n": 1}, queue="nope")
    message = str(refused.value)
    assert "unknown queue 'nope'" in message
    assert "conveyor queues create NAME" in message
    with pytest.raises(UnknownQueueError, match="unknown queue 'nope', 'zilch'"):
        await client.enqueue_many(
            [
                JobRequest("mail", {"to": "x"}),
                JobRequest("plain", {"n": 1}, queue="zilch"),
                JobRequest("plain", {"n": 2}, queue="nope"),
            ]
        )
    with pytest.raises(InvalidOptionError, match="queue name 'no spaces!' is not allowed"):
        await client.enqueue("plain", {"n": 1}, queue="no spaces!")
    # Nothing written: no job, and not even the declared queue 'mail' of the refused batch.
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert _queues(db) == ["default"]

    await client.create_queue("nope")
    job_id = await client.enqueue("plain", {"n": 1}, queue="nope")
    assert db.one("select queue from {schema}.jobs where id = %s", [job_id]) == "nope"


async def test_enqueue_many_ten_thousand_jobs_returns_ids_in_order(frozen: Any, db: DB) -> None:
    client, _ = frozen
    await client.create_queue("adhoc")
    requests: list[JobRequest] = []
    expected: list[tuple[str, str, dict[str, Any], str, datetime, int]] = []
    for i in range(10_000):
        kind = i % 4
        if kind == 0:
            requests.append(JobRequest("plain", {"n": i}))
            expected.append(("default", "plain", {"n": i}, "available", T0, 2))
        elif kind == 1:
            requests.append(JobRequest("mail", {"to": f"u{i}@example.com", "n": i}))
            expected.append(("mail", "mail", {"to": f"u{i}@example.com", "n": i}, "available", T0, 1))
        elif kind == 2:
            requests.append(JobRequest("plain", {"n": i}, queue="adhoc", priority="low"))
            expected.append(("adhoc", "plain", {"n": i}, "available", T0, 3))
        else:
            requests.append(JobRequest("plain", {"n": i}, delay=i))
            expected.append(("default", "plain", {"n": i}, "scheduled", T0 + timedelta(seconds=i), 2))

    ids = await client.enqueue_many(requests)

    assert len(ids) == 10_000
    assert ids == sorted(set(ids))  # distinct and in request order
    rows = {
        row[0]: row[1:]
        for row in db.all(
            "select id, queue, task, args, state, run_at, priority, enqueued_at from {schema}.jobs"
        )
    }
    assert len(rows) == 10_000
    for i in [0, 1, 2, 3, 4, 1234, 4321, 5002, 7777, 9998, 9999]:
        assert rows[ids[i]] == (*expected[i], T0), i
    # ...and every row matches its request.
    assert [rows[job_id][:6] for job_id in ids] == expected
    assert _queues(db) == ["adhoc", "default", "mail"]
    assert await client.enqueue_many([]) == []


@pytest.mark.parametrize(
    "value",
    [
        "back\\slash \\N \\t and a real\ttab, newline\n, return\r",
        "\\",
        "\\\\u0000 is text, not NUL",
        "quotes \" and ' and unicode: żółw 🐢 \u2028",
        "\\N",
        "",
    ],
)
async def test_enqueue_many_writes_arguments_exactly_whatever_characters_they_hold(
    frozen: Any, db: DB, value: str
) -> None:
    # Bulk enqueue writes COPY's text format itself: escaping must be exact, row after row.
    client, _ = frozen
    ids = await client.enqueue_many(
        [JobRequest("blob", {"data": value}), JobRequest("blob", {"data": value + "x"}, delay=5)]
    )
    rows = db.all("select id, args, state from {schema}.jobs order by id")
    assert rows == [
        (ids[0], {"data": value}, "available"),
        (ids[1], {"data": value + "x"}, "scheduled"),
    ]


async def test_enqueue_many_with_unique_keys_returns_the_holders(
    client: Conveyor, tasks: Registry, db: DB
) -> None:
    held = await client.enqueue("plain", {"n": 0}, unique_key="a")
    ids = await client.enqueue_many(
        [
            JobRequest("plain", {"n": 1}, unique_key="a"),  # held by a live job
            JobRequest("plain", {"n": 2}, unique_key="b"),
            JobRequest("plain", {"n": 3}, unique_key="b"),  # duplicate within the batch
            JobRequest("plain", {"n": 4}),
            JobRequest("plain", {"n": 5}, unique_key="c", delay=60),
            JobRequest("plain", {"n": 6}, unique_key="a"),
        ]
    )
    assert ids[0] == held
    assert ids[5] == held
    assert ids[1] == ids[2]
    assert len({held, ids[1], ids[3], ids[4]}) == 4
    rows = db.all("select id, args ->> 'n', unique_key, state from {schema}.jobs order by id")
    assert rows == [
        (held, "0", "a", "available"),
        (ids[1], "2", "b", "available"),
        (ids[3], "4", None, "available"),
        (ids[4], "5", "c", "scheduled"),
    ]


async def test_one_bad_request_in_enqueue_many_writes_nothing(
    client: Conveyor, tasks: Registry, db: DB
) -> None:
    kept = await client.enqueue("plain", {"n": -1})
    good = [JobRequest("plain", {"n": i}) for i in range(500)] + [JobRequest("mail", {"to": "z"})]
    bad_requests: list[tuple[JobRequest, type[Exception], str]] = [
        (JobRequest("plain", {"n": "seven"}), ArgumentsError, "argument 'n' should be int, got str"),
        (JobRequest("plain", {}), ArgumentsError, "missing required argument 'n'"),
        (JobRequest("nosuch", {}), UnknownTaskError, "unknown task 'nosuch'"),
        (JobRequest("plain", {"n": 1}, priority=7), InvalidOptionError, "priority 7 is out of range"),
        (JobRequest("plain", {"n": 1}, max_attempts=0), InvalidOptionError, "max_attempts must be"),
        (JobRequest("plain", {"n": 1}, queue="ghost"), UnknownQueueError, "unknown queue 'ghost'"),
    ]
    for bad, error, message in bad_requests:
        with pytest.raises(error, match=message):
            await client.enqueue_many([*good[:250], bad, *good[250:]])
    assert db.all("select id from {schema}.job_list") == [(kept,)]
    assert _queues(db) == ["default"]  # 'mail' was created in the rolled-back batch only


async def test_bad_arguments_are_refused_with_a_clear_error_and_nothing_is_written(
    client: Conveyor, tasks: Registry, db: DB
) -> None:
    kept = await client.enqueue("plain", {"n": 1})
    refusals: list[tuple[str, dict[str, Any], type[Exception], str]] = [
        ("nosuch", {}, UnknownTaskError, r"unknown task 'nosuch'; registered: anything, blob, mail, plain"),
        ("plain", {"m": 1}, ArgumentsError, r"task 'plain': unexpected argument 'm' \(it takes 'n'\)"),
        ("plain", {}, ArgumentsError, r"task 'plain': missing required argument 'n'"),
        ("plain", {"n": True}, ArgumentsError, r"argument 'n' should be int, got bool true"),
        ("mail", {"to": 5}, ArgumentsError, r"argument 'to' should be str, got int 5"),
        ("anything", {"value": datetime(2031, 1, 1, tzinfo=UTC)}, ArgumentsError, "arguments are not JSON"),
        ("anything", {"value": {1, 2}}, ArgumentsError, "arguments are not JSON"),
        ("anything", {"value": math.nan}, ArgumentsError, "arguments are not JSON"),
        ("blob", {"data": "x" * MAX_ARGS_BYTES}, ArgumentsError, r"more than the 1048576 byte limit"),
    ]
    for task, args, error, message in refusals:
        with pytest.raises(error, match=message):
            await client.enqueue(task, args)
    with pytest.raises(ArgumentsError, match="arguments must be a JSON object, got list"):
        await client.enqueue("plain", [("n", 1)])  # type: ignore[arg-type]
    assert db.all("select id from {schema}.job_list") == [(kept,)]

    # Exactly at the limit is accepted: {"data":"..."} is 11 bytes around the string.
    at_limit = await client.enqueue("blob", {"data": "x" * (MAX_ARGS_BYTES - 11)})
    assert db.one("select length(args ->> 'data') from {schema}.jobs where id = %s", [at_limit]) == (
        MAX_ARGS_BYTES - 11
    )
    with pytest.raises(ArgumentsError, match="arguments take 1048577 bytes as JSON"):
        await client.enqueue("blob", {"data": "x" * (MAX_ARGS_BYTES - 10)})
    assert db.one("select count(*) from {schema}.jobs") == 2


async def test_strings_postgresql_cannot_store_are_refused_as_bad_arguments(
    client: Conveyor, tasks: Registry, db: DB
) -> None:
    """JSON allows "\\u0000" and lone surrogates; PostgreSQL's jsonb does not. Such
    arguments must be refused like any other bad arguments (ArgumentsError naming the
    task), not surface as a raw psycopg DataError from the INSERT or COPY."""
    for text in ["nul \x00 inside", "lone surrogate \ud800"]:
        with pytest.raises(ArgumentsError, match="task 'blob'"):
            await client.enqueue("blob", {"data": text})
        with pytest.raises(ArgumentsError, match="task 'blob'"):
            await client.enqueue_many([JobRequest("plain", {"n": 1}), JobRequest("blob", {"data": text})])
    assert db.one("select count(*) from {schema}.job_list") == 0


def test_sync_client_on_its_own_pool(database_url: str, schema: str, tasks: Registry, db: DB) -> None:
    clock = FrozenClock(T0)
    with SyncConveyor(database_url, schema=schema, registry=tasks, clock=clock) as client:
        first = client.enqueue("mail", {"to": "s@example.com"})
        later = client.enqueue("plain", {"n": 1}, delay=timedelta(minutes=5), priority="low")
        same = client.enqueue("plain", {"n": 2}, unique_key="u")
        assert client.enqueue("plain", {"n": 3}, unique_key="u") == same
        ids = client.enqueue_many(
            [JobRequest("plain", {"n": 10 + i}, delay=i % 2) for i in range(100)]
            + [JobRequest("plain", {"n": 500}, unique_key="u")]
        )
        assert ids[-1] == same
        with pytest.raises(UnknownQueueError, match="unknown queue 'nope'"):
            client.enqueue("plain", {"n": 4}, queue="nope")
        with pytest.raises(ArgumentsError, match="unexpected argument 'x'"):
            client.enqueue_many([JobRequest("plain", {"n": 5}), JobRequest("plain", {"x": 1})])

    assert db.all(
        "select queue, task, args, state, priority, max_attempts, attempt, unique_key"
        " from {schema}.jobs where id = %s",
        [first],
    ) == [("mail", "mail", {"to": "s@example.com"}, "available", 1, 3, 0, None)]
    assert db.all("select run_at, state, priority from {schema}.jobs where id = %s", [later]) == [
        (T0 + timedelta(minutes=5), "scheduled", 3)
    ]
    rows = db.all(
        "select id, args ->> 'n', state from {schema}.jobs where id = any(%s) order by id", [ids[:-1]]
    )
    assert rows == [(ids[i], str(10 + i), "scheduled" if i % 2 else "available") for i in range(100)]
    assert db.one("select count(*) from {schema}.jobs") == 3 + 100
    assert _queues(db) == ["default", "mail"]


async def test_a_bad_argument_deep_in_a_large_batch_aborts_the_copy_and_writes_nothing(
    client: Conveyor, tasks: Registry, db: DB
) -> None:
    """Arguments of a batch on Conveyor's own connection are checked as its rows stream into
    COPY: one found bad after many megabytes went out still leaves nothing behind."""
    kept = await client.enqueue("plain", {"n": -1})
    requests = [JobRequest("plain", {"n": i}) for i in range(50_000)]
    requests[40_000] = JobRequest("plain", {"n": "forty thousand"})
    with pytest.raises(ArgumentsError, match="argument 'n' should be int, got str"):
        await client.enqueue_many(requests)
    assert db.all("select id from {schema}.job_list") == [(kept,)]
    # The connection that carried the aborted COPY works on.
    ids = await client.enqueue_many([JobRequest("plain", {"n": i}) for i in range(3)])
    assert db.one("select count(*) from {schema}.jobs where id = any(%s)", [ids]) == 3


async def test_a_bad_request_in_a_batch_on_the_callers_connection_leaves_its_transaction_usable(
    database_url: str, client: Conveyor, tasks: Registry, db: DB
) -> None:
    requests = [JobRequest("plain", {"n": i}) for i in range(20_000)]
    requests[15_000] = JobRequest("plain", {"n": "bad"})
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("create temporary table mine (x int)")
        await conn.execute("insert into mine values (1)")
        with pytest.raises(ArgumentsError, match="argument 'n' should be int, got str"):
            await client.enqueue_many(requests, conn=conn)
        await conn.execute("insert into mine values (2)")  # the transaction was not aborted
        assert await (await conn.execute("select count(*) from mine")).fetchone() == (2,)
        await conn.commit()
    assert db.one("select count(*) from {schema}.jobs") == 0


async def test_a_second_job_into_a_known_queue_is_written_as_the_first_was(
    database_url: str, frozen: Any, db: DB, schema: str
) -> None:
    """The first enqueue into a queue learns that it exists; later ones due now take one short
    insert. The rows and the notification must not tell the two apart."""
    client, _ = frozen
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(schema)))
        first = await client.enqueue("mail", {"to": "a@example.com"})
        second = await client.enqueue("mail", {"to": "a@example.com"})
        heard = [n.payload async for n in listener.notifies(timeout=1.0, stop_after=2)]
    assert "mail" in client._known_queues
    rows = db.all(
        "select queue, task, args, state, priority, max_attempts, attempt, run_at, enqueued_at, errors"
        " from {schema}.jobs where id = any(%s) order by id",
        [[first, second]],
    )
    assert rows[0] == rows[1]
    assert rows[0][3:] == ("available", 1, 3, 0, T0, T0, [])
    assert heard == ["mail", "mail"]
