"""Queue limits, enforced by the database (sql/queries/limits.sql): rate limits exact over a
sliding window, concurrency caps, limits per key without head-of-line blocking, and jobs held
back neither failing nor using attempts. The claims run through the worker's own database
seam with an injected clock; the last tests run a worker."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from conveyor.db.database import Database
from conveyor.errors import InvalidOptionError
from conveyor.jobs import ClaimedJob, HeldBack
from conveyor.limits import Rate
from conveyor.queue.client import Conveyor
from conveyor.queue.enqueue import JobRequest
from conveyor.tasks import Registry

from ..helpers import DB, wait_until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
WORKER = uuid.uuid4()


def add_jobs(db: DB, queue: str, n: int, *, key: str | None = None, task: str = "noop") -> list[int]:
    """n due jobs in ``queue`` (with ``key``), in claim order; their ids."""
    db.all("INSERT INTO {schema}.queues (name) VALUES (%s) ON CONFLICT DO NOTHING", [queue])
    rows = db.all(
        "INSERT INTO {schema}.jobs (queue, task, state, priority, run_at, enqueued_at, max_attempts, key)"
        " SELECT %s, %s, 'available', 2, now() - interval '1 hour' + make_interval(secs => s), now(), 3, %s"
        " FROM generate_series(1, %s) AS s ORDER BY s RETURNING id",
        [queue, task, key, n],
    )
    return [row[0] for row in rows]


@pytest.fixture
async def seam(database_url: str, schema: str) -> AsyncIterator[Database]:
    database = Database(database_url, schema)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


Claim = Callable[..., Any]


@pytest.fixture
def claim(seam: Database) -> Claim:
    async def run(queue: str, limit: int, at: datetime) -> tuple[list[ClaimedJob], HeldBack | None]:
        return await seam.claim_limited(worker_id=WORKER, queue=queue, limit=limit, lease=LEASE, now=at)

    return run


def finish(db: DB, ids: list[int]) -> None:
    """The jobs' outcomes are written: they no longer run."""
    db.all("DELETE FROM {schema}.jobs WHERE id = ANY (%s)", [ids])


async def test_rate_limit_is_exact_over_a_sliding_window(client: Conveyor, db: DB, claim: Claim) -> None:
    """20 per minute: a start is allowed only while fewer than 20 starts lie in the last
    minute; the 21st waits until exactly one minute after the first, and so on."""
    await client.set_queue_limits("exports", rate=(20, "1m"))
    add_jobs(db, "exports", 100)

    jobs, held = await claim("exports", 5, T0)  # 5 at T0
    assert len(jobs) == 5
    assert held is None
    jobs, held = await claim("exports", 50, T0 + timedelta(seconds=10))  # 15 more at T0+10
    assert len(jobs) == 15
    assert held == HeldBack("exports", T0 + timedelta(seconds=60), T0 + timedelta(seconds=10), by_queue=True)
    jobs, held = await claim("exports", 50, T0 + timedelta(seconds=59.999))
    assert jobs == []
    assert held is not None
    assert held.next_at == T0 + timedelta(seconds=60)
    # The 5 starts of T0 leave the window at T0+60 exactly: 5 more, then the 15 of T0+10 at T0+70.
    jobs, held = await claim("exports", 50, T0 + timedelta(seconds=60))
    assert len(jobs) == 5
    assert held is not None
    assert held.next_at == T0 + timedelta(seconds=70)
    jobs, held = await claim("exports", 50, T0 + timedelta(seconds=69))
    assert jobs == []
    jobs, held = await claim("exports", 50, T0 + timedelta(seconds=70))
    assert len(jobs) == 15
    assert held is not None
    assert held.next_at == T0 + timedelta(seconds=120)
    jobs, _ = await claim("exports", 50, T0 + timedelta(seconds=120))
    assert len(jobs) == 5
    # Over the whole run no minute-long span holds more than 20 starts.
    starts = sorted(db.all("SELECT started_at FROM {schema}.jobs WHERE state = 'running'"))
    times = [row[0] for row in starts]
    assert len(times) == 45
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + timedelta(minutes=1)) <= 20


async def test_tokens_are_charged_for_jobs_taken_only(client: Conveyor, db: DB, claim: Claim) -> None:
    await client.set_queue_limits("q", rate=(10, "1m"))
    add_jobs(db, "q", 3)
    jobs, held = await claim("q", 50, T0)
    assert len(jobs) == 3
    assert held is None
    window = db.one("SELECT starts, counts FROM {schema}.rate_windows WHERE queue = 'q' AND key = ''")
    assert window == ([T0], [3])
    add_jobs(db, "q", 20)
    jobs, held = await claim("q", 50, T0 + timedelta(seconds=1))
    assert len(jobs) == 7
    assert held is not None
    assert held.next_at == T0 + timedelta(seconds=60)


async def test_jobs_held_back_neither_fail_nor_use_attempts(client: Conveyor, db: DB, claim: Claim) -> None:
    await client.set_queue_limits("q", rate=(2, "1h"), concurrency=1)
    ids = add_jobs(db, "q", 5)
    jobs, held = await claim("q", 10, T0)
    assert [j.id for j in jobs] == ids[:1]
    assert held is not None
    assert held.next_at is None
    for second in range(1, 5):
        jobs, _ = await claim("q", 10, T0 + timedelta(seconds=second))
        assert jobs == []
    waiting = db.all("SELECT state, attempt, errors FROM {schema}.jobs WHERE id = ANY (%s)", [ids[1:]])
    assert waiting == [("available", 0, [])] * 4
    assert db.one("SELECT count(*) FROM {schema}.dead_jobs") == 0


async def test_concurrency_cap_counts_running_jobs(client: Conveyor, db: DB, claim: Claim) -> None:
    await client.set_queue_limits("q", concurrency=2)
    add_jobs(db, "q", 10)
    first, held = await claim("q", 10, T0)
    assert len(first) == 2
    assert held is not None
    assert held.next_at is None
    again, held = await claim("q", 10, T0)
    assert again == []
    assert held is not None
    finish(db, [first[0].id])
    more, _ = await claim("q", 10, T0)
    assert len(more) == 1
    assert db.one("SELECT count(*) FROM {schema}.jobs WHERE state = 'running'") == 2


async def test_a_saturated_key_does_not_delay_another(
    client: Conveyor, db: DB, claim: Claim, registry: Registry
) -> None:
    """Key "big" has 1,000 jobs ahead of key "small"'s one: with one running per key, both
    start in the same claim, and big's next job waits for its first to end. Keys are given
    at enqueue (key=) and derived from an argument (@task(key=...))."""

    @registry.task(name="fetch", queue="q", key="account")
    def fetch(account: str) -> None:
        pass

    await client.set_queue_limits("q", key_concurrency=1)
    big = await client.enqueue_many([JobRequest(fetch, {"account": "x"}, key="big") for _ in range(1000)])
    small = [await client.enqueue(fetch, {"account": "small"})]
    jobs, held = await claim("q", 10, T0)
    assert sorted(j.id for j in jobs) == sorted([big[0], small[0]])
    assert held is not None
    assert held.next_at is None
    jobs, _ = await claim("q", 10, T0)
    assert jobs == []  # big runs one at a time
    finish(db, [big[0]])
    jobs, _ = await claim("q", 10, T0)
    assert [j.id for j in jobs] == [big[1]]


async def test_key_rate_limits_and_unkeyed_jobs(client: Conveyor, db: DB, claim: Claim) -> None:
    """2 per 10 s per key; jobs without a key count against the queue's limits only."""
    await client.set_queue_limits("q", key_rate=(2, "10s"))
    a = add_jobs(db, "q", 5, key="a")
    b = add_jobs(db, "q", 5, key="b")
    plain = add_jobs(db, "q", 3)
    jobs, held = await claim("q", 50, T0)
    assert sorted(j.id for j in jobs) == sorted(a[:2] + b[:2] + plain)
    assert held is not None
    assert held.next_at == T0 + timedelta(seconds=10)
    jobs, _ = await claim("q", 50, T0 + timedelta(seconds=9))
    assert jobs == []
    jobs, _ = await claim("q", 50, T0 + timedelta(seconds=10))
    assert sorted(j.id for j in jobs) == sorted(a[2:4] + b[2:4])


async def test_the_plain_claim_skips_limited_queues(client: Conveyor, db: DB, seam: Database) -> None:
    await client.set_queue_limits("limited", concurrency=5)
    add_jobs(db, "limited", 3)
    plain = add_jobs(db, "plain", 3)
    jobs = await seam.claim_jobs(
        worker_id=WORKER, queues=["limited", "plain"], limits=[10, 10], limit=10, lease=LEASE, now=T0
    )
    assert sorted(j.id for j in jobs) == plain
    jobs = await seam.claim_jobs(
        worker_id=WORKER, queues=["limited"], limits=[10], limit=10, lease=LEASE, now=T0
    )
    assert jobs == []


async def test_limited_claim_respects_pauses(client: Conveyor, db: DB, claim: Claim) -> None:
    await client.set_queue_limits("q", concurrency=10)
    add_jobs(db, "q", 2, task="paused_task")
    ok = add_jobs(db, "q", 2, task="ok")
    db.all("INSERT INTO {schema}.pauses (scope, name) VALUES ('all', '')")
    assert (await claim("q", 10, T0))[0] == []
    db.all("DELETE FROM {schema}.pauses")
    db.all("INSERT INTO {schema}.pauses (scope, name) VALUES ('task', 'paused_task')")
    await client.pause_queue("q")
    assert (await claim("q", 10, T0))[0] == []
    await client.resume_queue("q")
    jobs, _ = await claim("q", 10, T0)
    assert sorted(j.id for j in jobs) == ok


async def test_setting_limits_checks_input_and_clears(client: Conveyor, db: DB) -> None:
    with pytest.raises(InvalidOptionError, match="rate"):
        await client.set_queue_limits("q", rate="20 per minute")
    with pytest.raises(InvalidOptionError, match="concurrency"):
        await client.set_queue_limits("q", concurrency=0)
    with pytest.raises(InvalidOptionError, match="between 1 and"):
        await client.set_queue_limits("q", rate=(0, "1s"))
    for call, message in [
        ("SELECT {schema}.set_queue_limits('q', 5)", "rate_limit and rate_period go together"),
        ("SELECT {schema}.set_queue_limits('q', concurrency => 0)", "concurrency cap must be at least 1"),
        ("SELECT {schema}.set_queue_limits('q', 5, interval '-1 s')", "rate period must be positive"),
    ]:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            db.all(call)
    await client.set_queue_limits("q", rate="20/1m", concurrency=2, key_concurrency=1)
    [row] = await client.queue_limits()
    assert row.queue == "q"
    assert row.limits.rate == Rate(20, timedelta(minutes=1))
    assert row.limits.describe() == "rate 20/1m, concurrency 2; per key: concurrency 1"
    await client.set_queue_limits("q")  # all None: no limit
    assert await client.queue_limits() == []
    assert db.one("SELECT limited FROM {schema}.queues WHERE name = 'q'") is False


async def test_worker_claims_when_the_window_reopens_not_at_its_poll(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """5 per second, 10 jobs, a poll every 30 s: the second five start when the window
    reopens (about 1 s after the first), woken by the worker's timer."""

    @registry.task(name="noop", queue="rated")
    def noop() -> None:
        pass

    await client.set_queue_limits("rated", rate=(5, "1s"))
    add_jobs(db, "rated", 10)
    async with start_worker(poll_interval=30.0, concurrency=20) as worker:
        await wait_until(lambda: db.one("SELECT count(*) FROM {schema}.job_history") == 10, within=10)
        assert worker.stats.limited_claims >= 1
    starts = sorted(row[0] for row in db.all("SELECT started_at FROM {schema}.job_history"))
    assert starts[4] - starts[0] < timedelta(seconds=0.5)
    gap = starts[5] - starts[0]
    assert timedelta(seconds=1) <= gap < timedelta(seconds=1.5), gap


async def test_worker_picks_up_new_limits_and_a_freed_slot_at_once(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """Limits set while a worker runs apply to it at once (it was told), and a cap of 1 drains
    a queue job after job as outcomes are written, not poll after poll."""
    gate = asyncio.Event()

    @registry.task(name="noop", queue="capped")
    async def noop() -> None:
        await gate.wait()

    async with start_worker(poll_interval=30.0, concurrency=10) as worker:
        await client.set_queue_limits("capped", concurrency=1)
        await wait_until(lambda: "capped" in worker._limits.limited, within=5)
        add_jobs(db, "capped", 6)
        await client._wake(["capped"])
        await wait_until(lambda: len(worker.running_jobs) == 1, within=5)
        await asyncio.sleep(0.2)
        assert len(worker.running_jobs) == 1
        started = time.monotonic()
        gate.set()
        await wait_until(lambda: db.one("SELECT count(*) FROM {schema}.job_history") == 6, within=10)
        assert time.monotonic() - started < 5  # far less than one poll interval per job


async def test_limits_declared_in_code_are_written_when_a_worker_starts(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """The declaration wins over what was set before the worker started; queues it does
    not declare keep their limits."""
    registry.queue("exports", rate=(20, "1m"), concurrency=1, key_concurrency=1)
    await client.set_queue_limits("exports", concurrency=5)
    await client.set_queue_limits("other", concurrency=3)
    with pytest.raises(InvalidOptionError, match="declared twice"):
        registry.queue("exports", concurrency=2)

    @registry.task(name="export", queue="exports")
    def export() -> None:
        pass

    async with start_worker():
        rows = {row.queue: row.limits for row in await client.queue_limits()}
    assert rows["exports"].describe() == "rate 20/1m, concurrency 1; per key: concurrency 1"
    assert rows["other"].concurrency == 3


def test_the_sync_client_sets_and_reads_limits(database_url: str, schema: str, db: DB) -> None:
    from conveyor import SyncConveyor

    with SyncConveyor(database_url, schema=schema) as client:
        client.set_queue_limits("q", key_rate="5/1s")
        [row] = client.queue_limits("q")
    assert row.limits.describe() == "per key: rate 5/1s"
    assert db.one("SELECT key_rate_limit FROM {schema}.queues WHERE name = 'q'") == 5


async def test_limited_claim_reads_levels_from_the_worker_cursors(
    client: Conveyor, db: DB, seam: Database
) -> None:
    """Without per-key limits a limited queue is read as the plain claim reads one: from the
    worker's cursor of each level (a job behind it waits for the worker's next full scan)."""
    await client.set_queue_limits("q", concurrency=100)
    ids = add_jobs(db, "q", 6)
    fourth = db.one("SELECT run_at, id FROM {schema}.jobs WHERE id = %s", [ids[3]])
    jobs, _ = await seam.claim_limited(
        worker_id=WORKER,
        queue="q",
        limit=10,
        lease=LEASE,
        now=T0,
        after={("q", 2): fourth, ("other", 2): fourth},
    )
    assert [j.id for j in jobs] == ids[4:]
    jobs, _ = await seam.claim_limited(worker_id=WORKER, queue="q", limit=10, lease=LEASE, now=T0)
    assert [j.id for j in jobs] == ids[:4]


async def test_windows_whose_starts_left_their_period_are_pruned(
    client: Conveyor, db: DB, claim: Claim, seam: Database
) -> None:
    await client.set_queue_limits("q", rate=(5, "1m"), key_rate=(5, "10s"))
    add_jobs(db, "q", 2, key="a")
    add_jobs(db, "q", 2)
    await claim("q", 10, T0)
    assert sorted(db.all("SELECT key, counts FROM {schema}.rate_windows")) == [("", [4]), ("a", [2])]
    await seam.prune_rate_windows(now=T0 + timedelta(seconds=10))  # the key's period is over
    assert db.all("SELECT key FROM {schema}.rate_windows") == [("",)]
    await seam.prune_rate_windows(now=T0 + timedelta(seconds=59))
    assert db.all("SELECT key FROM {schema}.rate_windows") == [("",)]
    await seam.prune_rate_windows(now=T0 + timedelta(seconds=60))
    assert db.all("SELECT key FROM {schema}.rate_windows") == []


# -- review findings (third round, tests/chaos/probes/README.md) ---------------------------


def started(db: DB, queue: str, key: str | None = None) -> int:
    """Jobs of the queue (with the key, if given) that have started, running or finished."""
    return int(
        db.one(
            "SELECT count(*) FROM (SELECT queue, key, started_at FROM {schema}.jobs UNION ALL"
            " SELECT queue, key, started_at FROM {schema}.job_history) x"
            " WHERE queue = %s AND (%s::text IS NULL OR key = %s) AND started_at IS NOT NULL",
            [queue, key, key],
        )
    )


async def test_rate_periods_and_caps_the_claim_cannot_compute_are_refused(client: Conveyor, db: DB) -> None:
    """R2, R6, R7: a period past 365 days (100,000 years failed every claim of the queue with
    'timestamp out of range') or under 1 ms, NaN or infinite periods, and caps past 1,000,000
    are refused with a clear error from SQL and from Python."""
    for call, message in [
        (
            "SELECT {schema}.set_queue_limits('q', rate_limit => 5, rate_period => interval '100000 years')",
            "between 1 millisecond and 365 days",
        ),
        (
            "SELECT {schema}.set_queue_limits('q', key_rate_limit => 5, key_rate_period => interval '1 microsecond')",
            "between 1 millisecond and 365 days",
        ),
        ("SELECT {schema}.set_queue_limits('q', concurrency => 1000001)", "at most 1000000"),
    ]:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            db.all(call)
    for kwargs in [
        {"rate": (5, 10**12)},
        {"rate": (5, math.nan)},
        {"rate": (5, math.inf)},
        {"rate": (5, 1e-6)},
        {"key_rate": "5/3000000d"},
        {"rate": (5, timedelta(days=366))},
        {"concurrency": 10**12},
        {"key_concurrency": 1_000_001},
    ]:
        with pytest.raises(InvalidOptionError):
            await client.set_queue_limits("q", **kwargs)  # type: ignore[arg-type]
    limits = await client.set_queue_limits("q", rate=(5, 0.001), concurrency=1_000_000)
    assert limits.describe() == "rate 5/0.001s, concurrency 1000000"
    assert await client.set_queue_limits("q", rate="5/365d")


async def test_a_failing_limited_claim_stops_neither_the_plain_claim_nor_other_queues(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R2: a limited queue whose claim fails (here a period written past the function's
    check) is logged, counted and backed off; the worker's other queues, limited or not,
    are claimed as usual."""

    @registry.task(name="noop", queue="plain")
    def noop() -> None:
        pass

    await client.set_queue_limits("broken", rate=(5, "1s"))
    await client.set_queue_limits("capped", concurrency=5)
    db.all("UPDATE {schema}.queues SET rate_period = interval '100000 years' WHERE name = 'broken'")
    add_jobs(db, "broken", 3)
    add_jobs(db, "capped", 3)
    add_jobs(db, "plain", 5)
    async with start_worker(
        queues=["broken", "capped", "plain"], poll_interval=0.5, concurrency=10
    ) as worker:
        await wait_until(lambda: started(db, "plain") == 5 and started(db, "capped") == 3, within=10)
        assert worker.stats.limited_claim_errors >= 1
    assert started(db, "broken") == 0


async def test_a_key_held_by_its_rate_window_does_not_hold_other_keys(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R1 (I4, no head-of-line blocking): key a is held back by its rate window (1 per hour);
    key b's job, enqueued later, starts at once (its enqueue wakes the worker, which claims
    the queue again), not when a's window reopens."""

    @registry.task(name="noop", queue="k")
    def noop() -> None:
        pass

    await client.set_queue_limits("k", key_rate=(1, "1h"))
    async with start_worker(poll_interval=30, concurrency=5):
        await client.enqueue(noop, {}, key="a")
        await client.enqueue(noop, {}, key="a")
        await wait_until(lambda: started(db, "k", "a") == 1, within=5)
        await asyncio.sleep(0.3)  # the worker has seen a's second job held back
        await client.enqueue(noop, {}, key="b")
        await wait_until(lambda: started(db, "k", "b") == 1, within=2)
        assert started(db, "k", "a") == 1


async def test_a_key_held_by_its_cap_does_not_hold_a_new_key_until_the_poll(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R1: key a holds its one slot (key_concurrency 1) with a second job waiting; a job of a
    new key starts within a second of its enqueue, not at the next poll (30 s)."""
    gate = asyncio.Event()

    @registry.task(name="wait", queue="kc")
    async def wait() -> None:
        await gate.wait()

    await client.set_queue_limits("kc", key_concurrency=1)
    try:
        async with start_worker(poll_interval=30, concurrency=5):
            await client.enqueue(wait, {}, key="a")
            await client.enqueue(wait, {}, key="a")
            await wait_until(lambda: started(db, "kc", "a") == 1, within=5)
            await asyncio.sleep(0.3)
            enqueued = time.monotonic()
            await client.enqueue(wait, {}, key="b")
            await wait_until(lambda: started(db, "kc", "b") == 1, within=5)
            assert time.monotonic() - enqueued < 1
            assert started(db, "kc", "a") == 1
            gate.set()
    finally:
        gate.set()


async def test_a_queue_waiting_for_a_slot_is_asked_again_each_poll_whatever_wakes_the_worker(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R4: queue 'capped' (concurrency 1) is full with another worker's job; a rate-limited
    queue on the same worker wakes it every 0.2 s, so no wait lasts a poll interval. When the
    other worker's job ends (this worker is not told), 'capped' is asked again within about
    a poll interval, not when the rated backlog drains."""

    @registry.task(name="noop", queue="capped")
    def noop() -> None:
        pass

    @registry.task(name="rated_noop", queue="rated")
    def rated_noop() -> None:
        pass

    await client.set_queue_limits("capped", concurrency=1)
    await client.set_queue_limits("rated", rate=(1, 0.2))
    [other] = add_jobs(db, "capped", 1)
    db.all(
        "UPDATE {schema}.jobs SET state = 'running', attempt = 1, claims = 1, worker_id = %s,"
        " started_at = now(), lease_expires_at = now() + interval '1 hour' WHERE id = %s",
        [uuid.uuid4(), other],
    )
    add_jobs(db, "capped", 1)
    add_jobs(db, "rated", 200, task="rated_noop")
    async with start_worker(queues=["capped", "rated"], poll_interval=1.0, concurrency=5) as worker:
        await wait_until(lambda: worker.stats.limited_claims >= 3 and started(db, "rated") >= 3, within=5)
        finish(db, [other])  # the other worker's job ended
        ended = time.monotonic()
        await wait_until(lambda: started(db, "capped") == 1, within=5)
        assert time.monotonic() - ended < 3
        assert started(db, "rated") < 100


async def test_raising_a_rate_limit_applies_to_running_workers_at_once(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R3 (docs/limits.md: "Workers pick up every change at once"): a worker holding back a
    queue until an hour-long window reopens claims it again when the rate is raised."""

    @registry.task(name="noop", queue="r")
    def noop() -> None:
        pass

    await client.set_queue_limits("r", rate=(1, "1h"))
    async with start_worker(poll_interval=30, concurrency=5):
        await client.enqueue(noop, {}, key="x")
        await client.enqueue(noop, {}, key="x")
        await wait_until(lambda: started(db, "r", "x") == 1, within=5)
        await asyncio.sleep(0.3)
        await client.set_queue_limits("r", rate=(1000, "1s"))
        await wait_until(lambda: started(db, "r", "x") == 2, within=2)
        await client.set_queue_limits("r", rate=(1, "1h"))
        await client.enqueue(noop, {}, key="x")
        await asyncio.sleep(0.3)
        await client.set_queue_limits("r")  # cleared
        await wait_until(lambda: started(db, "r", "x") == 3, within=2)


async def test_a_limited_backlog_does_not_take_every_slot_from_plain_queues(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R5: a limited queue's long low-priority backlog (concurrency 100, never reached) took
    every free slot of each claim before the plain claim ran, so an unlimited queue's
    priority-0 jobs waited for the whole backlog. Limited and plain queues now share each
    claim's slots, the first side in turn taking at most half: the plain jobs start with the
    first slots."""
    gate = asyncio.Event()

    @registry.task(name="slow", queue="lim")
    async def slow() -> None:
        await gate.wait()

    @registry.task(name="urgent", queue="plain")
    async def urgent() -> None:
        await gate.wait()

    await client.set_queue_limits("lim", concurrency=100)
    add_jobs(db, "lim", 30, task="slow")
    db.all("UPDATE {schema}.jobs SET priority = 3")
    add_jobs(db, "plain", 3, task="urgent")
    db.all("UPDATE {schema}.jobs SET priority = 0 WHERE queue = 'plain'")
    try:
        async with start_worker(queues=["lim", "plain"], poll_interval=30, concurrency=10) as worker:
            await wait_until(lambda: len(worker.running_jobs) == 10, within=5)
            assert started(db, "plain") == 3
            assert started(db, "lim") == 7
            gate.set()
            await wait_until(lambda: db.one("SELECT count(*) FROM {schema}.job_history") == 33, within=10)
    finally:
        gate.set()


async def test_a_queue_held_by_its_own_window_is_not_asked_again_on_each_enqueue(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """The other side of R1: when the queue's own limit holds (1 per hour), a new job cannot
    start either, so its wake-up does not make the worker ask the queue again (each ask
    takes the queue's row lock); per-key holds are lifted by a wake-up, the queue's are not."""

    @registry.task(name="noop", queue="slow")
    def noop() -> None:
        pass

    await client.set_queue_limits("slow", rate=(1, "1h"))
    async with start_worker(poll_interval=30, concurrency=5) as worker:
        await client.enqueue(noop, {})
        await client.enqueue(noop, {})
        await wait_until(lambda: worker.stats.limited_claims >= 1, within=5)
        await asyncio.sleep(0.2)
        asked = worker.stats.limited_claims
        for _ in range(10):
            await client.enqueue(noop, {})
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert worker.stats.limited_claims - asked <= 1
        assert started(db, "slow") == 1
