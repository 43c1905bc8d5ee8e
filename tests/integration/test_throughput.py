"""Throughput per minute (conveyor.queue.throughput) on a real database: what each minute
counts, the per-read budget of uncounted minutes, and the cache of settled minutes (the
clock is frozen in the past, so which minutes are settled is known exactly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor import Conveyor, FrozenClock
from conveyor.queue.throughput import MINUTES, Minute, MinuteCache, read_throughput

from ..helpers import DB

START = datetime(2026, 1, 2, 3, 4, 30, tzinfo=UTC)  # the minute 03:04 is the hour's last
FIRST = datetime(2026, 1, 2, 2, 5, tzinfo=UTC)  # and 02:05 its first


def finished(db: DB, queue: str, at: datetime, state: str = "completed", count: int = 1) -> None:
    db.all(
        "INSERT INTO {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt,"
        " max_attempts, priority, state, queue, task, args, errors)"
        " SELECT nextval('{schema}.jobs_id_seq'), %(at)s, %(at)s, %(at)s, %(at)s, 1, 1, 2, %(state)s,"
        " %(queue)s, 't', '{{}}', '[]' FROM generate_series(1, %(count)s)",
        {"at": at, "state": state, "queue": queue, "count": count},
    )


def died(db: DB, queue: str, at: datetime) -> None:
    db.all(
        "INSERT INTO {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts, priority,"
        " queue, task, args, errors) VALUES (nextval('{schema}.jobs_id_seq'), %(at)s, %(at)s, %(at)s, 1, 1, 2,"
        " %(queue)s, 't', '{{}}', '[]')",
        {"at": at, "queue": queue},
    )


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 1, 2, hh, mm, ss, tzinfo=UTC)


def index(moment: datetime, first: datetime = FIRST) -> int:
    return int((moment - first) / timedelta(minutes=1))


async def test_minutes_count_completed_and_dead_jobs_by_queue_and_in_all(
    database_url: str, schema: str, db: DB
) -> None:
    clock = FrozenClock(START)
    async with Conveyor(database_url, schema=schema, clock=clock) as client:
        await client.create_queue("a")
        await client.create_queue("b")
        finished(db, "a", at(3, 0, 10), count=3)
        finished(db, "a", at(3, 0, 20), state="cancelled")  # not a completion
        finished(db, "b", at(3, 0, 50), count=2)
        finished(db, "a", at(3, 4, 10))  # the minute now
        finished(db, "a", at(2, 4, 59))  # a second before the hour's first minute
        died(db, "a", at(2, 30))

        one = await read_throughput(client.db, queue="a", now=clock.now(), cache=MinuteCache(), most=MINUTES)
        assert one.queue == "a"
        assert one.now == START
        assert one.first == FIRST
        assert len(one.minutes) == MINUTES
        assert one.uncounted == 0
        by_index = {i: m for i, m in enumerate(one.minutes) if m is not None and (m.completed or m.dead)}
        assert {i: (m.completed, m.dead) for i, m in by_index.items()} == {
            index(at(3, 0)): (3, 0),
            index(at(3, 4)): (1, 0),
            index(at(2, 30)): (0, 1),
        }
        assert all(
            m is not None and m.start == FIRST + timedelta(minutes=i) for i, m in enumerate(one.minutes)
        )
        assert (one.completed, one.dead, one.peak) == (4, 1, 3)

        every = await read_throughput(
            client.db, queue=None, now=clock.now(), cache=MinuteCache(), most=MINUTES
        )
        assert every.queue is None
        assert (every.completed, every.dead, every.peak) == (6, 1, 5)
        minute = every.minutes[index(at(3, 0))]
        assert minute is not None
        assert minute.completed == 5


async def test_a_read_counts_at_most_its_budget_newest_first_and_the_next_reads_fill_in(
    database_url: str, schema: str, db: DB
) -> None:
    clock = FrozenClock(START)
    async with Conveyor(database_url, schema=schema, clock=clock) as client:
        await client.create_queue("a")
        finished(db, "a", at(2, 10), count=7)  # an old minute: index 5
        cache = MinuteCache()
        first = await read_throughput(client.db, queue="a", now=clock.now(), cache=cache, most=15)
        assert first.uncounted == MINUTES - 15
        assert all(m is None for m in first.minutes[:45])
        assert all(m is not None for m in first.minutes[45:])
        assert first.completed == 0  # the busy minute is not counted yet ...
        uncounted = [first.uncounted]
        while uncounted[-1]:
            found = await read_throughput(client.db, queue="a", now=clock.now(), cache=cache, most=15)
            uncounted.append(found.uncounted)
        # ... each later read counts the minute now again and 14 older ones, until none is left.
        assert uncounted == [45, 31, 17, 3, 0]
        assert found.completed == 7
        minute = found.minutes[index(at(2, 10))]
        assert minute is not None
        assert minute.completed == 7


async def test_settled_minutes_are_cached_and_the_minute_now_is_counted_each_time(
    database_url: str, schema: str, db: DB
) -> None:
    clock = FrozenClock(START)
    async with Conveyor(database_url, schema=schema, clock=clock) as client:
        await client.create_queue("a")
        finished(db, "a", at(3, 0, 10), count=3)
        finished(db, "a", at(3, 4, 10))
        cache = MinuteCache()
        await read_throughput(client.db, queue="a", now=clock.now(), cache=cache, most=MINUTES)
        # Settled: every minute that ended by 03:04:25 (now less 5 s); not the minute now.
        assert sorted(cache.known("a")) == [FIRST + timedelta(minutes=i) for i in range(MINUTES - 1)]
        assert cache.known(None) == {}

        # A row written into a cached minute is not seen (the cache is trusted: see the module's
        # invariants; Conveyor never stamps a finish that far back), one in the minute now is.
        finished(db, "a", at(3, 0, 30))
        finished(db, "a", at(3, 4, 20))
        again = await read_throughput(client.db, queue="a", now=clock.now(), cache=cache, most=MINUTES)
        assert again.minutes[index(at(3, 0))] == cache_minute(at(3, 0), 3)
        last = again.minutes[-1]
        assert last is not None
        assert last.completed == 2
        fresh = await read_throughput(
            client.db, queue="a", now=clock.now(), cache=MinuteCache(), most=MINUTES
        )
        assert fresh.minutes[index(at(3, 0))] == cache_minute(at(3, 0), 4)

        # A minute on: 03:04 has settled and is cached, 02:05 has left the hour and the cache.
        clock.advance(60)
        later = await read_throughput(client.db, queue="a", now=clock.now(), cache=cache, most=MINUTES)
        assert later.first == FIRST + timedelta(minutes=1)
        known = cache.known("a")
        assert min(known) == FIRST + timedelta(minutes=1)
        assert max(known) == at(3, 4)
        assert len(known) == MINUTES - 1
        assert known[at(3, 4)] == (2, 0)
        assert later.completed == 5  # 3 cached for 03:00, 2 in 03:04


def cache_minute(start: datetime, completed: int) -> Minute:
    return Minute(start, completed, 0)
