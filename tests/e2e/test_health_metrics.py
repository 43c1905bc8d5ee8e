"""/health and /metrics through real HTTP (uvicorn on a free port, httpx) against the real
database, with real `conveyor worker` processes running the jobs."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from conveyor import Conveyor, JobRequest
from conveyor.db import migrations
from conveyor.ops.health import HealthLimits, probe_for
from conveyor.ops.metrics import reader_for

from ..helpers import DB, FreezingProxy, wait_until
from . import metrics_tasks
from .health_metrics_service import Samples, Service, parse_metrics, start_worker, stop_worker, value

pytestmark = pytest.mark.processes

TICK, BROKEN, IDLE = "metrics_tick", "metrics_broken", "metrics_idle"
LABELS = {"queue", "task", "state", "schedule", "le", "type", "status"}  # type, status: problem kinds


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse_metrics(response.text)
    for _name, labels in samples:
        assert {key for key, _ in labels} <= LABELS, labels  # bounded labels: never a job id
    return samples


async def get_health(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await http.get("/health")
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


def counter(samples: Samples, event: str, queue: str, task: str) -> float:
    return value(samples, f"conveyor_jobs_{event}_total", queue=queue, task=task)


# -- /metrics ---------------------------------------------------------------------------------


async def test_metrics_agree_with_queue_stats_and_count_what_a_worker_process_ran(
    database_url: str, schema: str, db: DB, workers: list[subprocess.Popen[str]]
) -> None:
    async with Conveyor(database_url, schema=schema) as client:
        await client.create_queue("held")
        await client.pause_queue("held")
        with Service(database_url, schema) as service:
            async with httpx.AsyncClient(base_url=service.base) as http:
                workers.append(start_worker(database_url, schema, "--queues", "m", "--concurrency", "4"))
                await wait_until(lambda: db.one("select count(*) from {schema}.workers") == 1, within=30)
                first = await scrape(http)  # the counters start from here
                assert counter(first, "completed", "m", TICK) == 0  # declared tasks show at 0 ...
                await client.enqueue_many(
                    [JobRequest(metrics_tasks.tick, {"ms": 30}) for _ in range(20)]
                    + [JobRequest(metrics_tasks.broken) for _ in range(3)]
                    + [JobRequest(metrics_tasks.tick, delay=3600) for _ in range(5)]
                    + [JobRequest(metrics_tasks.tick, queue="held") for _ in range(4)]
                )
                await client.chain(
                    JobRequest(metrics_tasks.tick, queue="held"), JobRequest(metrics_tasks.tick, queue="held")
                )
                await wait_until(
                    lambda: (
                        db.one("select count(*) from {schema}.job_history where queue = 'm'") == 20
                        and db.one("select count(*) from {schema}.dead_jobs") == 3
                    ),
                    within=60,
                )

                async def counted() -> bool:
                    s = await scrape(http)
                    return counter(s, "completed", "m", TICK) == 20 and counter(s, "dead", "m", BROKEN) == 3

                await wait_until(counted, within=15, interval=0.3)
                stats = db.all(
                    "select queue, paused, waiting, scheduled, running, completed_24h, dead, "
                    "extract(epoch from oldest_waiting_age) from {schema}.queue_stats"
                )
                samples = await scrape(http)

        assert {row[0] for row in stats} == {"default", "m", "held"}
        for queue, paused, waiting, scheduled, running, completed, dead, oldest in stats:
            assert value(samples, "conveyor_queue_jobs", queue=queue, state="available") == waiting
            assert value(samples, "conveyor_queue_jobs", queue=queue, state="scheduled") == scheduled
            assert value(samples, "conveyor_queue_jobs", queue=queue, state="running") == running
            assert value(samples, "conveyor_queue_dead_jobs", queue=queue) == dead
            assert value(samples, "conveyor_queue_completed_24h", queue=queue) == completed
            assert value(samples, "conveyor_queue_paused", queue=queue) == (1 if paused else 0)
            assert value(samples, "conveyor_queue_oldest_waiting_seconds", queue=queue) == pytest.approx(
                float(oldest or 0), abs=2.0
            )
        # What the worker did and what waits, as the test made it.
        assert value(samples, "conveyor_queue_jobs", queue="m", state="scheduled") == 5
        assert value(samples, "conveyor_queue_jobs", queue="held", state="available") == 5
        assert value(samples, "conveyor_queue_jobs", queue="held", state="blocked") == 1
        assert value(samples, "conveyor_queue_dead_jobs", queue="m") == 3
        assert value(samples, "conveyor_queue_completed_24h", queue="m") == 20
        assert value(samples, "conveyor_queue_retrying_jobs", queue="m") == 0

        assert counter(samples, "completed", "m", TICK) == 20
        assert counter(samples, "started", "m", TICK) == 20
        assert counter(samples, "cancelled", "m", TICK) == 0
        assert counter(samples, "failed", "m", TICK) == 0
        assert counter(samples, "dead", "m", BROKEN) == 3
        # Two attempts each, every one counted (the first was retried before any read), the
        # first one failed and retried, the second one dead.
        assert counter(samples, "started", "m", BROKEN) == 6
        assert counter(samples, "failed", "m", BROKEN) == 3
        assert counter(samples, "completed", "m", IDLE) == 0  # ... until they run
        # The totals count from the migration to schema 12 (this test's schema was made for it).
        created = value(samples, "conveyor_jobs_completed_created", queue="m", task=TICK)
        since = float(db.one("select extract(epoch from counting_since) from {schema}.metric_mark"))
        assert created == pytest.approx(since, abs=1e-3)
        # The schema is a copy of one migrated when the test session began (tests/conftest.py):
        # counting began then, so within the session's hour, and not in the future.
        assert 0 <= time.time() - created < 3600

        # The histograms hold the 20 completed jobs: each ran about 30 ms.
        assert value(samples, "conveyor_job_run_seconds_count", queue="m") == 20
        assert value(samples, "conveyor_job_run_seconds_bucket", queue="m", le="0.025") == 0
        assert value(samples, "conveyor_job_run_seconds_bucket", queue="m", le="+Inf") == 20
        assert 20 * 0.03 <= value(samples, "conveyor_job_run_seconds_sum", queue="m") < 20 * 5
        assert value(samples, "conveyor_job_wait_seconds_count", queue="m") == 20
        assert value(samples, "conveyor_job_wait_seconds_bucket", queue="m", le="+Inf") == 20
        assert value(samples, "conveyor_job_run_seconds_count", queue="held") == 0

        assert (
            value(
                samples,
                "conveyor_workers",
            )
            == 1
        )
        assert value(samples, "conveyor_worker_slots") == 4
        assert value(samples, "conveyor_queue_workers", queue="m") == 1
        assert value(samples, "conveyor_queue_workers", queue="held") == 0
        assert value(samples, "conveyor_scheduler_up") == 0
        # Nothing of this process's own: a failed read is a failed scrape (Prometheus' up).
        assert not any(name.startswith("conveyor_metrics_read_failures") for name, _ in samples)


async def test_counters_never_decrease_while_jobs_finish_and_retention_runs(
    database_url: str, schema: str, db: DB, workers: list[subprocess.Popen[str]]
) -> None:
    rounds, per_round = 6, 40
    async with Conveyor(database_url, schema=schema) as client:
        # Retention that keeps nothing of queue m: its finished and dead jobs go to the run log
        # at once. (A keep shorter than the longest takes rows; the others go by whole days.)
        await client.create_queue("m")
        await client.set_retention("m", completed_keep=timedelta(0), dead_keep=timedelta(0))
        with Service(database_url, schema) as service:
            async with httpx.AsyncClient(base_url=service.base) as http:
                scrapes = [await scrape(http)]
                workers.append(start_worker(database_url, schema, "--queues", "m", "--concurrency", "8"))

                async def some_counted() -> bool:
                    scrapes.append(await scrape(http))
                    return counter(scrapes[-1], "completed", "m", TICK) > 0

                for round_ in range(rounds):
                    if round_ == rounds // 2:  # counted along the way, with rounds still to come
                        await wait_until(some_counted, within=15, interval=0.3)
                    await client.enqueue_many(
                        [JobRequest(metrics_tasks.tick, {"ms": 5}) for _ in range(per_round)]
                        + [JobRequest(metrics_tasks.broken)]
                    )
                    await wait_until(  # a scrape in mid-flow: some of the round finished
                        lambda: db.one("select count(*) from {schema}.jobs") < per_round, within=30
                    )
                    scrapes.append(await scrape(http))
                    await client.apply_retention(budget=5)
                    scrapes.append(await scrape(http))
                await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=60)

                async def all_taken() -> bool:
                    # Retention takes a job once the counters have it: each run counts up to
                    # a second or so ago, then takes what was counted.
                    await client.apply_retention(budget=5)
                    scrapes.append(await scrape(http))
                    return db.one("select count(*) from {schema}.job_history") == 0 and (
                        db.one("select count(*) from {schema}.dead_jobs") == 0
                    )

                await wait_until(all_taken, within=15, interval=0.3)

                async def counted() -> bool:
                    s = await scrape(http)
                    scrapes.append(s)
                    return (
                        counter(s, "completed", "m", TICK) == rounds * per_round
                        and counter(s, "dead", "m", BROKEN) == rounds
                    )

                await wait_until(counted, within=15, interval=0.3)
                # Everything is counted; now retention deletes the run log too: the counters stay.
                await client.set_retention("m", runs_keep=timedelta(0))
                await client.apply_retention(budget=5)
                assert db.one("select count(*) from {schema}.job_runs") == 0
                scrapes.append(await scrape(http))

    last = scrapes[-1]
    assert counter(last, "completed", "m", TICK) == rounds * per_round
    assert counter(last, "started", "m", TICK) == rounds * per_round
    assert counter(last, "dead", "m", BROKEN) == rounds
    assert counter(last, "started", "m", BROKEN) == 2 * rounds
    assert counter(last, "failed", "m", BROKEN) == rounds
    # Retention takes only what was counted: every completed job is in the histograms too.
    assert value(last, "conveyor_job_run_seconds_count", queue="m") == rounds * per_round
    assert value(last, "conveyor_queue_dead_jobs", queue="m") == 0  # the gauge follows the table
    series = {
        key
        for key in last
        if key[0].endswith("_total") or key[0].endswith("_bucket") or key[0].endswith("_count")
    }
    assert len(series) > 40
    for key in series:
        values = [s.get(key, 0.0) for s in scrapes]
        assert values == sorted(values), (key, values)
    # The counters grew along the way, not at the end only.
    completed = ("conveyor_jobs_completed_total", (("queue", "m"), ("task", TICK)))
    assert any(0 < s.get(completed, 0) < rounds * per_round for s in scrapes)


async def test_histogram_buckets_are_prometheus_le_exactly(database_url: str, schema: str, db: DB) -> None:
    """A wait of exactly 0.5 s is in le="0.5"; 1 µs more is not."""
    with Service(database_url, schema) as service:
        async with httpx.AsyncClient(base_url=service.base) as http:
            await scrape(http)
            db.all(
                "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, "
                "max_attempts, priority, state, queue, task, args, errors) "
                "select 900000 + n, t0, t0, t0 + w, t0 + w + r, 1, 1, 2, 'completed', 'default', 'exact', "
                "'{{}}', '[]' "
                "from (values (1, interval '0.5 s', interval '1 s'), "
                "(2, interval '0.500001 s', interval '1.000001 s')) as v (n, w, r), "
                "(select clock_timestamp() as t0) as c"
            )

            async def counted() -> bool:
                s = await scrape(http)
                return value(s, "conveyor_job_wait_seconds_count", queue="default") == 2

            await wait_until(counted, within=15, interval=0.3)
            samples = await scrape(http)
    bucket = "conveyor_job_{}_seconds_bucket"
    assert value(samples, bucket.format("wait"), queue="default", le="0.25") == 0
    assert value(samples, bucket.format("wait"), queue="default", le="0.5") == 1
    assert value(samples, bucket.format("wait"), queue="default", le="1.0") == 2
    assert value(samples, bucket.format("run"), queue="default", le="0.5") == 0
    assert value(samples, bucket.format("run"), queue="default", le="1.0") == 1
    assert value(samples, bucket.format("run"), queue="default", le="2.5") == 2
    assert value(samples, "conveyor_job_wait_seconds_sum", queue="default") == pytest.approx(1.000001)
    assert value(samples, "conveyor_job_run_seconds_sum", queue="default") == pytest.approx(2.000001)
    assert counter(samples, "completed", "default", "exact") == 2
    assert counter(samples, "started", "default", "exact") == 2


async def test_limit_holds_schedule_lag_and_the_missing_scheduler(
    database_url: str, schema: str, db: DB, workers: list[subprocess.Popen[str]]
) -> None:
    async with Conveyor(database_url, schema=schema) as client:
        await client.set_queue_limits("lim", rate=(1, "1h"))
        await client.set_queue_limits("keyed", key_concurrency=1)
        await client.create_schedule("nightly", "0 3 * * *", metrics_tasks.tick)
        db.all("update {schema}.schedules set next_fire_at = now() - interval '90 s' where name = 'nightly'")
        with Service(database_url, schema) as service:
            async with httpx.AsyncClient(base_url=service.base) as http:
                workers.append(
                    start_worker(database_url, schema, "--queues", "lim,keyed", "--concurrency", "6")
                )
                await client.enqueue_many(
                    [JobRequest(metrics_tasks.tick, {"ms": 1}, queue="lim") for _ in range(4)]
                    + [
                        JobRequest(metrics_tasks.tick, {"ms": 20_000}, queue="keyed", key="a")
                        for _ in range(3)
                    ]
                    + [JobRequest(metrics_tasks.tick, {"ms": 20_000}, queue="keyed", key="b")]
                )
                await wait_until(
                    lambda: (
                        db.one("select count(*) from {schema}.job_history where queue = 'lim'") == 1
                        and db.one(
                            "select count(*) from {schema}.jobs where queue = 'keyed' and state = 'running'"
                        )
                        == 2
                    ),
                    within=30,
                )
                samples = await scrape(http)
                status, body = await get_health(http)
                workers[0].kill()

    # "lim" ran one job: its window is full, the other three wait for it. "keyed" runs one
    # job of each key: the two other jobs of key "a" wait for theirs.
    assert value(samples, "conveyor_queue_limit_held_jobs", queue="lim") == 3
    assert value(samples, "conveyor_queue_jobs", queue="lim", state="available") == 3
    assert value(samples, "conveyor_queue_limit_held_jobs", queue="keyed") == 2
    assert ("conveyor_queue_limit_held_jobs", (("queue", "default"),)) not in samples  # no limits there
    assert value(samples, "conveyor_schedule_lag_seconds", schedule="nightly") == pytest.approx(91, abs=3)
    assert value(samples, "conveyor_scheduler_up") == 0
    assert value(samples, "conveyor_schedules_active") == 1
    assert status == 200
    assert body["status"] == "degraded"
    assert any("schedule(s) will not fire" in reason for reason in body["reasons"]), body
    assert body["scheduler"] == {"leader": False, "last_tick_age_seconds": None, "active_schedules": 1}


# -- /health ----------------------------------------------------------------------------------


async def test_health_ok_with_a_worker_and_degraded_without_one_while_jobs_wait(
    database_url: str, schema: str, db: DB, workers: list[subprocess.Popen[str]]
) -> None:
    async with Conveyor(database_url, schema=schema) as client:
        with Service(database_url, schema) as service:
            async with httpx.AsyncClient(base_url=service.base) as http:
                workers.append(start_worker(database_url, schema, "--queues", "m"))
                await wait_until(lambda: db.one("select count(*) from {schema}.workers") == 1, within=30)
                await client.enqueue(metrics_tasks.tick, {"ms": 1})
                await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1, within=30)
                status, ok = await get_health(http)

                stop_worker(workers[0])  # a clean stop: its row goes
                assert db.one("select count(*) from {schema}.workers") == 0
                await client.enqueue(metrics_tasks.tick, {"ms": 1})
                degraded_status, degraded = await get_health(http)

    assert status == 200
    assert ok["status"] == "ok", ok
    assert ok["reasons"] == []
    assert ok["workers"] == {"alive": 1, "slots": 10}
    assert {q["queue"]: q["workers"] for q in ok["queues"]}["m"] == 1
    assert ok["schema"]["current"] is True
    assert ok["database"]["reachable"] is True

    assert degraded_status == 200
    assert degraded["status"] == "degraded"
    assert degraded["reasons"] == ["queue 'm': 1 due job(s) wait and no live worker serves it"]
    assert degraded["workers"] == {"alive": 0, "slots": 0}
    m = {q["queue"]: q for q in degraded["queues"]}["m"]
    assert m["waiting"] == 1
    assert m["workers"] == 0
    assert m["oldest_waiting_seconds"] is not None


async def test_health_follows_the_engines_liveness_rule_and_the_oldest_wait(
    database_url: str, schema: str, db: DB
) -> None:
    """A worker is alive while it beats, or while it holds a lease that has not run out."""
    silent = "00000000-0000-0000-0000-00000000000a"
    with Service(database_url, schema) as service:
        async with httpx.AsyncClient(base_url=service.base) as http:
            async with Conveyor(database_url, schema=schema) as client:
                [held, waiting] = await client.enqueue_many([JobRequest(metrics_tasks.tick)] * 2)
            db.all(
                "insert into {schema}.workers (id, hostname, pid, queues, concurrency, started_at, heartbeat_at) "
                "values (%s, 'h', 1, '{{m}}', 1, now() - interval '1 h', now() - interval '1 min')",
                [silent],
            )
            db.all(
                "update {schema}.jobs set state = 'running', worker_id = %s, attempt = 1, claims = 1, "
                "started_at = now(), lease_expires_at = now() + interval '1 min' where id = %s",
                [silent, held],
            )
            _, leased = await get_health(http)
            db.all("update {schema}.jobs set lease_expires_at = now() - interval '1 s' where id = %s", [held])
            _, lapsed = await get_health(http)
            db.all("update {schema}.workers set heartbeat_at = now() where id = %s", [silent])
            _, beating = await get_health(http)
            db.all("update {schema}.jobs set run_at = now() - interval '10 min' where id = %s", [waiting])
            _, old = await get_health(http)

    assert leased["status"] == "ok", leased  # silent for a minute, but its lease holds
    assert leased["workers"]["alive"] == 1
    assert lapsed["status"] == "degraded"
    assert lapsed["reasons"] == ["queue 'm': 1 due job(s) wait and no live worker serves it"]
    assert beating["status"] == "ok", beating
    assert old["status"] == "degraded"
    [reason] = old["reasons"]
    assert reason.startswith("queue 'm': its oldest due job has waited 10 min (more than 5 min)")


async def test_health_degraded_on_another_schema_revision_and_down_when_not_installed(
    database_url: str, schema: str, db: DB
) -> None:
    with Service(database_url, schema) as service:
        async with httpx.AsyncClient(base_url=service.base) as http:
            first = await get_health(http)
            await asyncio.to_thread(migrations.downgrade, database_url, schema, "0006_one_job_writer")
            behind = await get_health(http)
            await asyncio.to_thread(migrations.upgrade, database_url, schema)
            again = await get_health(http)
            db.all("update {schema}.alembic_version set version_num = '0099_from_the_future'")
            ahead = await get_health(http)
            db.all("drop schema {schema} cascade")
            missing = await get_health(http)
            metrics_missing = await http.get("/metrics")

    head = migrations.head()
    assert first[0] == 200
    assert first[1]["status"] == "ok"
    status, body = behind
    assert status == 200
    assert body["status"] == "degraded"
    assert body["schema"] == {"revision": "0006_one_job_writer", "expected_revision": head, "current": False}
    assert body["reasons"][0] == (
        f"the schema is at revision 0006_one_job_writer, behind this Conveyor's {head}: run `conveyor migrate`"
    )
    # Revision 6 has no pauses table: what could not be read is said, and the rest is read.
    assert body["reasons"][1:] == ["could not read the queues (UndefinedTable, SQLSTATE 42P01)"]
    assert body["workers"] == {"alive": 0, "slots": 0}
    assert again[0] == 200
    assert again[1]["status"] == "ok"
    status, body = ahead
    assert status == 200
    assert body["status"] == "degraded"
    assert body["reasons"] == [
        "the schema is at revision 0099_from_the_future, which this Conveyor does not know "
        f"(a newer Conveyor migrated it; this one expects {head}): upgrade this service"
    ]
    status, body = missing
    assert status == 503
    assert body["status"] == "down"
    assert body["reasons"] == [f"Conveyor is not installed in the schema {schema!r}: run `conveyor migrate`"]
    assert body["database"]["reachable"] is True
    assert metrics_missing.status_code == 503
    assert metrics_missing.headers["content-type"] == "application/problem+json"
    assert metrics_missing.json()["detail"] == (
        "the database could not be read for metrics (InvalidSchemaName, SQLSTATE 3F000)"
    )


async def test_health_and_metrics_answer_503_in_time_when_the_database_cannot_be_reached(
    database_url: str, schema: str
) -> None:
    def configure(client: Conveyor) -> None:
        probe_for(client).limits = HealthLimits(deadline=1.0)
        reader_for(client).deadline = 1.0

    proxy = FreezingProxy(database_url)
    closed = False
    try:
        with Service(proxy.url(), schema, configure) as service:
            async with httpx.AsyncClient(base_url=service.base, timeout=30) as http:
                ok = await get_health(http)
                assert (await http.get("/metrics")).status_code == 200

                proxy.freeze()  # the link still takes bytes, and nothing comes back
                started = time.monotonic()
                frozen = await http.get("/health")
                frozen_took = time.monotonic() - started
                started = time.monotonic()
                frozen_metrics = await http.get("/metrics")
                metrics_took = time.monotonic() - started

                proxy.thaw()
                await wait_until(lambda: _status(http, "/metrics", 200), within=15)
                thawed = await get_health(http)

                proxy.close()  # nothing listens there any more
                closed = True
                refused = await http.get("/health")
                refused_metrics = await http.get("/metrics")
    finally:
        if not closed:
            proxy.close()

    assert ok[0] == 200
    assert ok[1]["status"] == "ok"
    assert frozen.status_code == 503
    assert frozen.json()["status"] == "down"
    assert frozen.json()["reasons"] == ["the database did not answer within 1 s"]
    assert frozen.json()["database"]["reachable"] is False
    assert frozen_took < 2.5
    assert frozen_metrics.status_code == 503
    assert frozen_metrics.json()["detail"] == (
        "the database could not be read for metrics (the database did not answer within 1 s)"
    )
    assert metrics_took < 2.5
    assert thawed[0] == 200
    assert thawed[1]["status"] == "ok"
    assert refused.status_code == 503
    [reason] = refused.json()["reasons"]
    assert reason.startswith("the database is unreachable or refused the check (OperationalError")
    assert refused_metrics.status_code == 503
    # Nothing says where the database is, or who connects to it.
    info = psycopg.conninfo.conninfo_to_dict(proxy.url())
    for response in (frozen, refused, frozen_metrics, refused_metrics):
        for secret in (str(info["port"]), str(info.get("host")), str(info.get("user")), "password"):
            assert secret not in response.text, (secret, response.text)


async def _status(http: httpx.AsyncClient, path: str, expected: int) -> bool:
    return (await http.get(path)).status_code == expected


async def test_a_burst_of_probes_costs_one_check(database_url: str, schema: str, db: DB) -> None:
    with Service(database_url, schema, reuse=None) as service:
        async with httpx.AsyncClient(base_url=service.base) as http:
            before = datetime.now(UTC)
            answers = await asyncio.gather(*(http.get("/health") for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    checked = {a.json()["checked_at"] for a in answers}
    assert len(checked) == 1  # one check, shared
    assert datetime.fromisoformat(checked.pop()) >= before


async def test_an_app_without_a_client_answers_503_with_the_reason() -> None:
    with Service("", "conveyor") as service:
        async with httpx.AsyncClient(base_url=service.base) as http:
            health = await http.get("/health")
            metrics = await http.get("/metrics")
    reason = "this service has no Conveyor client (app.state.conveyor)"
    assert health.status_code == 503
    assert health.json() == {"status": "down", "reasons": [reason]}
    assert metrics.status_code == 503
    assert metrics.headers["content-type"] == "application/problem+json"
    assert metrics.json()["detail"] == reason
