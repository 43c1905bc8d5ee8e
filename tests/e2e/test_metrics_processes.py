"""/metrics served by several API processes behind one address (two uvicorn servers on their
own ports, as ``conveyor api --workers 2`` runs two processes), over real HTTP, against the
real database, with a real `conveyor worker` process running the jobs: the counters and
histograms are the database's, so every server gives the same numbers, scrapes alternating
between them never go down, and a server restarted starts from where the totals were."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx
import pytest

from conveyor import Conveyor, JobRequest

from ..helpers import DB, wait_until
from . import metrics_tasks
from .health_metrics_service import Samples, Service, parse_metrics, start_worker, value

pytestmark = pytest.mark.processes

TICK, BROKEN = "metrics_tick", "metrics_broken"


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
    return parse_metrics(response.text)


def counted(samples: Samples) -> Samples:
    """The counters' and histograms' samples (the gauges are the state now, read at each
    scrape's own moment; so is the mark, which moves with time even when nothing happens)."""
    return {
        key: v
        for key, v in samples.items()
        if key[0].startswith(("conveyor_jobs_", "conveyor_job_wait_seconds", "conveyor_job_run_seconds"))
    }


def counter(samples: Samples, event: str, task: str) -> float:
    """A counter of queue m (0 before the worker declared the task)."""
    return samples.get((f"conveyor_jobs_{event}_total", (("queue", "m"), ("task", task))), 0.0)


class Servers:
    """Two API servers on their own ports, each with its own app and Conveyor client (as two
    processes of ``conveyor api --workers 2``); ``restart()`` replaces both."""

    def __init__(self, database_url: str, schema: str) -> None:
        self._url, self._schema = database_url, schema
        self._stack = AsyncExitStack()
        self.clients: list[httpx.AsyncClient] = []

    async def start(self) -> None:
        self.clients = []
        for _ in range(2):
            service = self._stack.enter_context(Service(self._url, self._schema))
            self.clients.append(
                await self._stack.enter_async_context(httpx.AsyncClient(base_url=service.base))
            )

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        await self._stack.aclose()
        self._stack = AsyncExitStack()


async def test_two_api_processes_give_the_same_monotonic_counters_through_restarts_retention_and_the_dlq(
    database_url: str, schema: str, db: DB, workers: list[subprocess.Popen[str]]
) -> None:
    rounds, per_round = 4, 30
    scrapes: list[Samples] = []  # every scrape, in order, whichever server answered it
    servers = Servers(database_url, schema)

    async def alternately(times: int = 1) -> None:
        for _ in range(times):
            for http in servers.clients:
                scrapes.append(await scrape(http))

    async with Conveyor(database_url, schema=schema) as client:
        await client.create_queue("m")
        # Finished jobs go to the run log (and then away) as soon as they are counted.
        await client.set_retention("m", completed_keep=timedelta(0), runs_keep=timedelta(0))
        workers.append(start_worker(database_url, schema, "--queues", "m", "--concurrency", "8"))
        await servers.start()
        try:
            await alternately(2)
            for round_ in range(rounds):
                ids = await client.enqueue_many(
                    [JobRequest(metrics_tasks.tick, {"ms": 5}) for _ in range(per_round)]
                    + [JobRequest(metrics_tasks.broken) for _ in range(2)]
                )
                await wait_until(  # scrapes in mid-flow, from both servers
                    lambda: db.one("select count(*) from {schema}.jobs") < per_round // 2, within=30
                )
                await alternately()
                dead = ids[-2:]
                await wait_until(
                    lambda dead=dead: (
                        db.one("select count(*) from {schema}.dead_jobs where id = any(%s)", [dead]) == 2
                    ),
                    within=30,
                )
                # The two dead jobs at once (likely before a count has reached their deaths): one
                # is retried (it dies again), the other purged.
                await client.retry_dead(dead[0])
                assert await client.purge_dead(ids=[dead[1]]) == 1
                await alternately()
                await client.apply_retention(budget=5)
                await alternately()
                if round_ == 1:  # both API processes restart: new servers, new clients, the same totals
                    await servers.restart()
                    servers.clients.reverse()
                    await alternately()
            await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=60)

            async def all_counted() -> bool:
                await alternately()
                return all(
                    counter(s, "completed", TICK) == rounds * per_round
                    and counter(s, "dead", BROKEN) == 3 * rounds
                    for s in scrapes[-2:]
                )

            await wait_until(all_counted, within=20, interval=0.3)
            # Quiet now: both servers give the very same counters and histograms.
            last_a, last_b = await scrape(servers.clients[0]), await scrape(servers.clients[1])
        finally:
            await servers.stop()

    assert counted(last_a) == counted(last_b)
    last = last_a
    assert counter(last, "completed", TICK) == rounds * per_round
    assert counter(last, "started", TICK) == rounds * per_round
    assert counter(last, "failed", TICK) == 0
    # Per round: two broken jobs of two attempts each, and the one retried from the dead-letter
    # table runs its two attempts again; each run's first attempt fails and is retried.
    assert counter(last, "dead", BROKEN) == 3 * rounds
    assert counter(last, "started", BROKEN) == 6 * rounds
    assert counter(last, "failed", BROKEN) == 3 * rounds
    assert value(last, "conveyor_job_run_seconds_count", queue="m") == rounds * per_round
    assert value(last, "conveyor_job_wait_seconds_count", queue="m") == rounds * per_round

    series = {key for key in counted(last) if not key[0].endswith("_created")}
    assert len(series) > 40
    series.add(("conveyor_metrics_counted_to_timestamp_seconds", ()))
    for key in series:  # never down, whichever server answered, restarts included
        values = [s.get(key, 0.0) for s in scrapes]
        assert values == sorted(values), (key, values)
    # One start for every series, in every scrape from every server: no reset for rate() to see.
    # (conveyor_api_problems_total counts each API process's own answers, so its start is the
    # process's: not one of the totals kept in the database.)
    created = {
        v
        for s in scrapes
        for (name, _), v in s.items()
        if name.endswith("_created") and not name.startswith("conveyor_api_problems")
    }
    assert len(created) == 1
    since = float(db.one("select extract(epoch from counting_since) from {schema}.metric_mark"))
    assert created.pop() == pytest.approx(since, abs=1e-3)
    completed = ("conveyor_jobs_completed_total", (("queue", "m"), ("task", TICK)))
    assert len({s.get(completed) for s in scrapes}) > rounds  # they grew along the way


async def test_servers_read_the_same_totals_while_jobs_run(
    database_url: str, schema: str, db: DB, workers: list[subprocess.Popen[str]]
) -> None:
    """Mid-flow, with no count allowed to move the totals between the two reads (the mark's row
    lock held), two servers read identical counters while the gauges follow the jobs."""
    async with Conveyor(database_url, schema=schema) as client:
        workers.append(start_worker(database_url, schema, "--queues", "m", "--concurrency", "4"))
        with Service(database_url, schema) as a, Service(database_url, schema) as b:
            async with (
                httpx.AsyncClient(base_url=a.base) as http_a,
                httpx.AsyncClient(base_url=b.base) as http_b,
            ):
                await client.enqueue_many([JobRequest(metrics_tasks.tick, {"ms": 50}) for _ in range(300)])

                async def some_counted() -> bool:
                    return 0 < counter(await scrape(http_a), "completed", TICK) < 250

                await wait_until(some_counted, within=30, interval=0.05)
                with db.connect() as hold:
                    hold.execute(db.compose("select 1 from {schema}.metric_mark for update"))
                    first_a = await scrape(http_a)
                    first_b = await scrape(http_b)
                    await wait_until(
                        lambda: (
                            db.one("select count(*) from {schema}.job_history")
                            > counter(first_a, "completed", TICK) + 10
                        ),
                        within=30,
                    )
                    then_b = await scrape(http_b)
                    then_a = await scrape(http_a)
                await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=60)

                async def all_counted() -> bool:
                    return counter(await scrape(http_b), "completed", TICK) == 300

                await wait_until(all_counted, within=20, interval=0.3)

    assert counted(first_a) == counted(first_b) == counted(then_a) == counted(then_b)
    assert 0 < counter(first_a, "completed", TICK) < 300
    # The gauges are read at each scrape: the jobs went on meanwhile.
    assert value(then_a, "conveyor_queue_completed_24h", queue="m") > counter(first_a, "completed", TICK)
    # And the counter caught up once the lock went.
    assert (
        db.one("select total from {schema}.metric_totals where event = 'completed' and task = %s", [TICK])
        == 300
    )
