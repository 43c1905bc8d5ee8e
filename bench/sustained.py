"""A sustained load through real processes, sampled over time; optionally with a transaction
holding back the xmin horizon in its middle.

    python bench/sustained.py --minutes 10 --rate 200 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --out /work/runs/sustained
    python bench/sustained.py --minutes 7 --rate 200 --hold-xmin 180 --hold-after 120 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --out /work/runs/xmin

The run makes a database of its own on that server (``conveyor_sustained_<time>``, dropped at
the end unless ``--keep-database``), migrates Conveyor into it, makes an operator key with
``conveyor keys create``, and starts ``conveyor api`` and ``--workers`` ``conveyor worker``
processes (task module ``bench/sustained_task.py``). Then, for ``--minutes``:

- **enqueue** at ``--rate`` jobs/s in all, split (``--api-share``) between ``POST /api/v1/jobs``
  (httpx, the key as a bearer token) and in-transaction enqueues (a psycopg transaction that
  inserts an application row, ``sustained_orders``, and enqueues its job with ``conn=``, one
  commit for both, on a pool of 16 connections), each source an open loop (a send every
  ``1 / rate`` s whether the last has answered or not, at most 64 unanswered);
- **the dashboard stays open**: a client signs in at ``/login`` like a browser (the login
  form's CSRF token, the session cookie), loads the overview, polls its live table
  (``/dashboard/queues``, which the page's htmx polls every 3 s) every ``--dashboard-seconds``
  and reloads the overview and the jobs page every fifth poll;
- **Prometheus** scrapes ``/metrics`` every ``--scrape-seconds`` (15);
- **a sampler**, every ``--sample-seconds``: the jobs that finished since the last sample
  (from ``job_history``: enqueue-to-start is ``started_at - enqueued_at``; ``enqueued_at`` is
  the enqueuing transaction's ``now()``), their count per second, p50/p99; the live backlog;
  total and index sizes of ``jobs``, ``job_history`` (all partitions) and ``dead_jobs``; their
  dead tuples (``pg_stat_user_tables``); the oldest ``backend_xmin`` age in the database; how
  far behind now the metrics' counting is (``metric_mark``); the
  RSS (``/proc/PID/status`` VmRSS) of every process; errors per source; how late the
  generator's own event loop runs (its request times include that); the load average.

When the producers stop, the workers drain the rest (``--drain-seconds`` at most) and every
enqueued job must be found completed in ``job_history``. With ``--hold-xmin S``, a REPEATABLE
READ transaction opened ``--hold-after`` seconds into the run reads ``jobs`` and stays open S
seconds; each sample says its phase (before, during, after).

The server's autovacuum: when it is off (the benchmark server here has it off), the run
vacuums ``jobs`` itself every ``--vacuum-seconds`` (default 30 then; 0: never), as autovacuum
would, so that what a held xmin takes away from vacuum shows.

Output: ``<out>.jsonl`` (one line per sample, then the summary) and ``<out>.summary.json``.
The summary flags a process whose RSS grew from the first sample to the last (more than 10% and
5 MB); ``python bench/sustained.py ... --quiet`` prints only the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TASK = "sustained_noop"
QUEUE = "sustained"
IN_FLIGHT = 64  # unanswered enqueues per source at most
SQL_CONNECTIONS = 16  # the in-transaction source's connections (an application's pool)
HISTORY_MARGIN = 30.0  # seconds: a job's finished_at is its transaction's start, committed a little later


@dataclass
class LoadConfig:
    url: str  # a database Conveyor is migrated into (schema ``schema``)
    schema: str
    seconds: float
    rate: float
    out: Path  # <out>.jsonl, <out>.summary.json, <out>.<process>.log
    api_share: float = 0.5
    sample_seconds: float = 10.0
    dashboard_seconds: float = 3.0
    scrape_seconds: float = 15.0  # GET /metrics, as Prometheus would (0: never)
    workers: int = 2
    worker_concurrency: int = 20
    api_pool_size: int = 10
    hold_xmin: float = 0.0
    hold_after: float = 0.0
    vacuum_seconds: float | None = None  # None: every 30 s if the server's autovacuum is off
    drain_seconds: float = 120.0
    quiet: bool = False


@dataclass
class Counts:
    """What one enqueue source (or the dashboard) did; the sampler reads it as it goes."""

    done: int = 0
    errors: int = 0
    first_error: str | None = None
    ids: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # request seconds

    def fail(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message[:300]


# -- processes -------------------------------------------------------------------------------


def process_env(config: LoadConfig) -> dict[str, str]:
    """The environment of every process the run starts: this tree's code, the task module."""
    paths = [str(BENCH), str(REPO / "service"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "CONVEYOR_DATABASE_URL": config.url,
        "CONVEYOR_SCHEMA": config.schema,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "PYTHONUNBUFFERED": "1",
    }


class Processes:
    """The ``conveyor`` processes of a run, each logging to ``<out>.<name>.log``."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.env = process_env(config)
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_path(name), "wb")  # noqa: SIM115 (kept open by the child; closed here)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *args],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self.running[name] = process
        return process

    def log_path(self, name: str) -> Path:
        return self.config.out.with_name(f"{self.config.out.name}.{name}.log")

    def error_lines(self) -> dict[str, int]:
        """Lines logged at ERROR or with a traceback, per process."""
        found = {}
        for name in self.running:
            text = self.log_path(name).read_text(errors="replace")
            found[name] = sum(1 for line in text.splitlines() if re.search(r"\bERROR\b|Traceback", line))
        return found

    def stop(self) -> dict[str, int | None]:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self.running.items():
            try:
                codes[name] = process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait(timeout=10)
        return codes


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB, from /proc (None once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found[1]) if found else None


def make_key(config: LoadConfig) -> str:
    """An operator key, made as a user makes one: ``conveyor keys create``."""
    name = f"sustained-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "keys", "create", "--name", name, "--role", "operator"],
        env=process_env(config),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within} s")
        await asyncio.sleep(0.1)


# -- the load --------------------------------------------------------------------------------


async def paced(rate: float, until: float, send: Callable[[int], Awaitable[None]]) -> None:
    """``send(n)`` started every ``1 / rate`` seconds until ``until`` (monotonic), whether the
    earlier sends have answered or not (an open loop, as independent users are), with at most
    IN_FLIGHT unanswered: past that the next waits, and the rate falls short (the summary's
    ``enqueued_per_second`` shows it); a schedule that fell behind sends at once to catch up,
    until ``until``, whatever is left unsent."""
    if rate <= 0:
        return
    interval = 1 / rate
    slots = asyncio.Semaphore(IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()

    def done(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()

    next_at = time.monotonic()
    for n in itertools.count():
        next_at += interval
        if next_at >= until or time.monotonic() >= until:  # behind schedule: the rest is not sent
            break
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await slots.acquire()
        task = asyncio.create_task(send(n))
        running.add(task)
        task.add_done_callback(done)
    await asyncio.gather(*running)


Send = Callable[[int], Awaitable[None]]


@contextlib.asynccontextmanager
async def api_source(base_url: str, token: str, counts: Counts) -> AsyncIterator[Send]:
    """``POST /api/v1/jobs`` with the key, on up to IN_FLIGHT keep-alive connections."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as http:

        async def send(n: int) -> None:
            started = time.monotonic()
            try:
                response = await http.post(
                    "/api/v1/jobs", json={"task": TASK, "args": {"order": n, "source": "api"}}
                )
            except httpx.HTTPError as exc:
                counts.fail(f"{type(exc).__name__}: {exc}")
                return
            counts.latencies.append(time.monotonic() - started)
            if response.status_code != 201:
                counts.fail(f"{response.status_code} {response.text}")
                return
            counts.done += 1
            counts.ids.append(int(response.json()["id"]))

        yield send


@contextlib.asynccontextmanager
async def sql_source(config: LoadConfig, counts: Counts) -> AsyncIterator[Send]:
    """In-transaction enqueues: an application row and its job, committed together, on a
    pool of SQL_CONNECTIONS connections (opened before the clock starts)."""
    from conveyor import Conveyor

    # The task is enqueued by name, as an application that does not import the workers' code
    # does: the client reads what the workers recorded for it, once.
    orders = sql.SQL("INSERT INTO {}.sustained_orders (amount) VALUES (%s) RETURNING id").format(
        sql.Identifier(config.schema)
    )
    connections = await asyncio.gather(
        *(psycopg.AsyncConnection.connect(config.url) for _ in range(SQL_CONNECTIONS))
    )
    idle = asyncio.Queue[psycopg.AsyncConnection[Any]]()
    for conn in connections:
        idle.put_nowait(conn)
    try:
        async with Conveyor(config.url, schema=config.schema) as client:

            async def send(n: int) -> None:
                conn = await idle.get()
                started = time.monotonic()
                try:
                    async with conn.transaction():
                        order = (await (await conn.execute(orders, [n % 1000])).fetchone())[0]  # type: ignore[index]
                        job = await client.enqueue(TASK, {"order": order, "source": "sql"}, conn=conn)
                except Exception as exc:  # any failure is counted against the source
                    counts.fail(f"{type(exc).__name__}: {exc}")
                    return
                finally:
                    idle.put_nowait(conn)
                counts.latencies.append(time.monotonic() - started)
                counts.done += 1
                counts.ids.append(job)

            await send(-1)  # the client learns the task (one read) before the clock starts
            yield send
    finally:
        for conn in connections:
            await conn.close()


async def dashboard_tab(base_url: str, token: str, every: float, until: float, counts: Counts) -> None:
    """A browser tab on the dashboard: signs in, loads the overview and the jobs page, polls
    the overview's live table as the page's htmx does, and reloads both pages every fifth poll."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30, follow_redirects=True) as web:

        async def load(path: str, live: bool = False) -> None:
            started = time.monotonic()
            try:
                response = await web.get(path, headers={"HX-Request": "true"} if live else {})
            except httpx.HTTPError as exc:
                counts.fail(f"GET {path}: {type(exc).__name__}: {exc}")
                return
            counts.latencies.append(time.monotonic() - started)
            if response.status_code != 200 or response.url.path.endswith("/login"):
                counts.fail(f"GET {path}: {response.status_code} at {response.url.path}")
                return
            counts.done += 1

        form = await web.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if csrf is None:
            counts.fail(f"no login form: {form.status_code}")
            return
        signed_in = await web.post("/login", data={"csrf": csrf[1], "key": token})
        if signed_in.status_code != 200 or signed_in.url.path.endswith("/login"):
            counts.fail(f"sign-in refused: {signed_in.status_code} at {signed_in.url.path}")
            return
        await load("/")  # the tab opens on the overview, then the jobs page
        await load("/dashboard/jobs")
        for polls in itertools.count(1):  # at least one poll, however slow the sign-in was
            await asyncio.sleep(every)
            await load("/dashboard/queues", live=True)
            if polls % 5 == 0:
                await load("/")
                await load("/dashboard/jobs")
            if time.monotonic() + every >= until:
                return


async def metrics_scraper(base_url: str, every: float, until: float, counts: Counts) -> None:
    """Prometheus: ``GET /metrics`` every ``every`` seconds (each scrape runs the counting step)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            started = time.monotonic()
            try:
                response = await http.get("/metrics")
            except httpx.HTTPError as exc:
                counts.fail(f"GET /metrics: {type(exc).__name__}: {exc}")
                continue
            counts.latencies.append(time.monotonic() - started)
            if response.status_code != 200:
                counts.fail(f"GET /metrics: {response.status_code}")
                continue
            counts.done += 1


async def hold_xmin(config: LoadConfig, events: list[dict[str, Any]]) -> None:
    """A REPEATABLE READ transaction that reads ``jobs`` (taking its snapshot) and stays open."""
    await asyncio.sleep(config.hold_after)
    async with await psycopg.AsyncConnection.connect(config.url) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        async with conn.transaction():
            query = sql.SQL("SELECT count(*) FROM {}.jobs").format(sql.Identifier(config.schema))
            await conn.execute(query)
            events.append({"event": "hold_start", "at": time.time()})
            await asyncio.sleep(config.hold_xmin)
        events.append({"event": "hold_end", "at": time.time()})


async def loop_lag(until: float, lags: list[float]) -> None:
    """How late this process's event loop wakes a 50 ms sleep, in ms: the load generator's own
    delay, which its request times (and in-transaction enqueues' transactions) include."""
    while time.monotonic() < until:
        asked = time.monotonic()
        await asyncio.sleep(0.05)
        lags.append(1000 * (time.monotonic() - asked - 0.05))


async def vacuum_loop(config: LoadConfig, every: float, until: float, events: list[dict[str, Any]]) -> None:
    """What autovacuum would do for ``jobs``, on a server that has it off."""
    async with await psycopg.AsyncConnection.connect(config.url, autocommit=True) as conn:
        query = sql.SQL("VACUUM (ANALYZE) {}.jobs").format(sql.Identifier(config.schema))
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            started = time.monotonic()
            await conn.execute(query)
            events.append(
                {"event": "vacuum", "at": time.time(), "seconds": round(time.monotonic() - started, 3)}
            )


# -- the sampler -----------------------------------------------------------------------------

SIZES = """
WITH t (name, rel) AS (
    VALUES ('jobs', to_regclass(%(jobs)s)), ('job_history', to_regclass(%(history)s)),
           ('dead_jobs', to_regclass(%(dead)s))),
part AS (  -- a table and its partitions (job_history's are one level deep)
    SELECT name, rel AS relid FROM t
    UNION ALL SELECT t.name, i.inhrelid FROM t JOIN pg_inherits i ON i.inhparent = t.rel)
SELECT part.name, sum(pg_total_relation_size(part.relid)), sum(pg_indexes_size(part.relid)),
       coalesce(sum(s.n_dead_tup), 0), coalesce(sum(s.n_live_tup), 0)
FROM part LEFT JOIN pg_stat_user_tables s ON s.relid = part.relid
GROUP BY part.name
"""
XMIN = """
SELECT max(age(backend_xmin)), extract(epoch FROM max(now() - xact_start))
FROM pg_stat_activity WHERE datname = current_database() AND backend_xmin IS NOT NULL
"""


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)


class Sampler:
    """Reads the database and /proc every ``sample_seconds``; keeps every job's latency."""

    def __init__(self, config: LoadConfig, conn: psycopg.AsyncConnection[Any], pids: dict[str, int]) -> None:
        self.config = config
        self.conn = conn
        self.pids = pids
        self.seen: set[int] = set()
        self.since: Any = None  # the database's now() at the last sample
        self.latencies: list[float] = []  # ms, every finished job's, in finishing order
        # The same by source: a job enqueued in an application's transaction has its
        # enqueued_at at that transaction's start (now()), so its enqueue-to-start includes
        # the rest of the transaction and its commit.
        self.by_source: dict[str, list[float]] = {"api": [], "sql": []}
        self.not_completed = 0
        self.samples: list[dict[str, Any]] = []
        self.lags: list[float] = []  # the driver's event loop (loop_lag), drained at each sample
        ident = sql.Identifier(config.schema)
        self.finished = sql.SQL(
            "SELECT id, state, 1000 * extract(epoch FROM started_at - enqueued_at), now(), args->>'source'"
            " FROM {}.job_history WHERE finished_at >= %s"
        ).format(ident)
        self.backlog = sql.SQL("SELECT count(*) FROM {}.jobs").format(ident)
        self.counted = sql.SQL("SELECT extract(epoch FROM now() - counted_to) FROM {}.metric_mark").format(
            ident
        )
        self.names = {
            "jobs": f'"{config.schema}".jobs',
            "history": f'"{config.schema}".job_history',
            "dead": f'"{config.schema}".dead_jobs',
        }

    async def sample(self, elapsed: float, phase: str, sources: dict[str, Counts]) -> dict[str, Any]:
        since = self.since if self.since is not None else "-infinity"
        if self.since is not None:
            since = self.since - timedelta(seconds=HISTORY_MARGIN)
        rows = await (await self.conn.execute(self.finished, [since])).fetchall()
        fresh = [r for r in rows if r[0] not in self.seen]
        if rows:
            self.since = rows[0][3]
        else:
            self.since = (await (await self.conn.execute("SELECT now()")).fetchone())[0]  # type: ignore[index]
        self.seen.update(r[0] for r in fresh)
        latencies = [float(r[2]) for r in fresh if r[2] is not None]
        self.latencies.extend(latencies)
        interval_by_source: dict[str, list[float]] = {"api": [], "sql": []}
        for _, _, latency, _, source in fresh:
            if latency is not None:
                interval_by_source[source].append(float(latency))
        for name, values in interval_by_source.items():
            self.by_source[name].extend(values)
        self.not_completed += sum(1 for r in fresh if r[1] != "completed")
        backlog = (await (await self.conn.execute(self.backlog)).fetchone())[0]  # type: ignore[index]
        tables = {
            name: {
                "total_bytes": int(total),
                "index_bytes": int(index),
                "dead_tuples": int(dead),
                "live_tuples": int(live),
            }
            for name, total, index, dead, live in await (
                await self.conn.execute(SIZES, self.names)
            ).fetchall()
        }
        xmin_age, oldest_xact = (await (await self.conn.execute(XMIN)).fetchone()) or (None, None)
        counted = await (await self.conn.execute(self.counted)).fetchone()
        lags, self.lags[:] = list(self.lags), []
        previous = self.samples[-1] if self.samples else None
        seconds = elapsed - (previous["elapsed"] if previous else 0.0)
        sample = {
            "kind": "sample",
            "at": time.time(),
            "elapsed": round(elapsed, 2),
            "phase": phase,
            "finished": len(fresh),
            "finished_per_second": round(len(fresh) / seconds, 1) if seconds > 0 else None,
            "latency_p50_ms": percentile(latencies, 0.50),
            "latency_p99_ms": percentile(latencies, 0.99),
            "latency_max_ms": round(max(latencies), 2) if latencies else None,
            "latency_by_source_ms": {
                name: {"p50": percentile(values, 0.50), "p99": percentile(values, 0.99)}
                for name, values in interval_by_source.items()
            },
            "backlog": int(backlog),
            "tables": tables,
            "oldest_xmin_age": int(xmin_age) if xmin_age is not None else None,
            "oldest_transaction_seconds": round(float(oldest_xact), 1) if oldest_xact is not None else None,
            "metrics_counted_behind_seconds": round(float(counted[0]), 1)
            if counted and counted[0] is not None
            else None,
            "rss_kib": {name: rss_kib(pid) for name, pid in self.pids.items()},
            "enqueued": {name: sources[name].done for name in ("api", "sql")},
            "errors": {name: c.errors for name, c in sources.items()},
            "dashboard_loads": sources["dashboard"].done,
            "metrics_scrapes": sources["metrics"].done,
            "driver_loop_lag_ms": {"p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99)},
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
        self.samples.append(sample)
        return sample


# -- a run -----------------------------------------------------------------------------------


async def run(config: LoadConfig) -> dict[str, Any]:
    """Run the load against ``config.url``/``config.schema`` (migrated); returns the summary."""
    config.out.parent.mkdir(parents=True, exist_ok=True)
    ident = sql.Identifier(config.schema)
    async with await psycopg.AsyncConnection.connect(config.url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.sustained_orders"
                " (id bigserial PRIMARY KEY, amount int NOT NULL, placed_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident)
        )
        autovacuum = (await (await conn.execute("SHOW autovacuum")).fetchone())[0]  # type: ignore[index]
        server = (await (await conn.execute("SHOW server_version")).fetchone())[0]  # type: ignore[index]
    vacuum_every = (
        config.vacuum_seconds if config.vacuum_seconds is not None else (30.0 if autovacuum == "off" else 0.0)
    )
    token = make_key(config)
    processes = Processes(config)
    senders = contextlib.AsyncExitStack()  # the enqueue sources, open from before the clock starts
    sources = {"api": Counts(), "sql": Counts(), "dashboard": Counts(), "metrics": Counts()}
    events: list[dict[str, Any]] = []
    lines = open(config.out.with_name(config.out.name + ".jsonl"), "w")  # noqa: SIM115, ASYNC230 (closed in finally; opened once)

    def emit(record: dict[str, Any]) -> None:
        lines.write(json.dumps(record) + "\n")
        lines.flush()
        if not config.quiet:
            print(json.dumps(record), flush=True)

    try:
        api = processes.start(
            "api",
            "api",
            "--port",
            "0",
            "--workers",
            "1",
            "--pool-size",
            str(config.api_pool_size),
            "--no-access-log",
            "--tasks",
            "sustained_task",
        )
        for n in range(config.workers):
            processes.start(
                f"worker{n + 1}",
                "worker",
                "--tasks",
                "sustained_task",
                "--queues",
                QUEUE,
                "--concurrency",
                str(config.worker_concurrency),
                "--grace",
                "5",
            )
        base_url = await _api_url(processes, api)
        async with await psycopg.AsyncConnection.connect(config.url, autocommit=True) as conn:
            count_workers = sql.SQL("SELECT count(*) FROM {}.workers").format(ident)

            async def registered() -> bool:
                _exit_if_gone(processes)
                return bool((await (await conn.execute(count_workers)).fetchone())[0] >= config.workers)  # type: ignore[index]

            await wait_for(registered, "the workers registering")
            pids = {name: p.pid for name, p in processes.running.items()} | {"driver": os.getpid()}
            sampler = Sampler(config, conn, pids)
            api_send = await senders.enter_async_context(api_source(base_url, token, sources["api"]))
            sql_send = await senders.enter_async_context(sql_source(config, sources["sql"]))
            started = time.monotonic()
            until = started + config.seconds
            api_rate = config.rate * config.api_share
            tasks = [
                asyncio.create_task(paced(api_rate, until, api_send)),
                asyncio.create_task(paced(config.rate - api_rate, until, sql_send)),
                asyncio.create_task(
                    dashboard_tab(base_url, token, config.dashboard_seconds, until, sources["dashboard"])
                ),
            ]
            if config.scrape_seconds:
                tasks.append(
                    asyncio.create_task(
                        metrics_scraper(base_url, config.scrape_seconds, until, sources["metrics"])
                    )
                )
            if config.hold_xmin:
                tasks.append(asyncio.create_task(hold_xmin(config, events)))
            if vacuum_every:
                tasks.append(asyncio.create_task(vacuum_loop(config, vacuum_every, until, events)))
            tasks.append(asyncio.create_task(loop_lag(until, sampler.lags)))

            def phase() -> str:
                if not config.hold_xmin:
                    return "steady"
                marks = {e["event"] for e in events}
                return "after" if "hold_end" in marks else "during" if "hold_start" in marks else "before"

            emit(
                {
                    "kind": "start",
                    "config": _jsonable(config),
                    "server_version": server,
                    "autovacuum": autovacuum,
                    "vacuum_every": vacuum_every,
                    "pids": pids,
                    "cores": os.cpu_count(),
                }
            )
            next_sample = started
            while time.monotonic() < until:
                next_sample += config.sample_seconds
                await asyncio.sleep(max(0.0, min(next_sample, until) - time.monotonic()))
                _exit_if_gone(processes)
                emit(await sampler.sample(time.monotonic() - started, phase(), sources))
            await asyncio.gather(*tasks)
            await senders.aclose()
            for event in events:
                emit({"kind": "event", **event})
            enqueued_ids = sources["api"].ids + sources["sql"].ids
            drain = await _drain(conn, config, enqueued_ids)
            final = await sampler.sample(time.monotonic() - started, "drained", sources)
            emit(final)
        codes = processes.stop()
        summary = summarize(config, sampler, sources, events, drain, processes.error_lines(), codes)
        summary.update(server_version=server, autovacuum=autovacuum, vacuum_every=vacuum_every)
        emit(summary)
        config.out.with_name(config.out.name + ".summary.json").write_text(
            json.dumps(summary, indent=2) + "\n"
        )
        return summary
    finally:
        await senders.aclose()
        processes.stop()
        lines.close()


async def _api_url(processes: Processes, api: subprocess.Popen[bytes]) -> str:
    """The API's address from its first line, once ``/health`` answers."""
    found: list[str] = []

    async def announced() -> bool:
        _exit_if_gone(processes)
        text = processes.log_path("api").read_text(errors="replace")
        match = re.search(r"(http://[^/\s]+)/api/v1", text)
        if match:
            found.append(match[1])
        return bool(match)

    await wait_for(announced, "conveyor api announcing its address")
    async with httpx.AsyncClient(base_url=found[-1], timeout=5) as http:

        async def healthy() -> bool:
            _exit_if_gone(processes)
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get("/health")).status_code == 200
            return False

        await wait_for(healthy, "conveyor api answering /health")
    return found[-1]


def _exit_if_gone(processes: Processes) -> None:
    for name, process in processes.running.items():
        if process.poll() is not None:
            tail = processes.log_path(name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")


async def _drain(conn: psycopg.AsyncConnection[Any], config: LoadConfig, ids: list[int]) -> dict[str, Any]:
    """Wait until every enqueued job has left ``jobs``; then how they ended."""
    ident = sql.Identifier(config.schema)
    waiting = sql.SQL("SELECT NOT EXISTS (SELECT FROM {}.jobs)").format(
        ident
    )  # only the run's jobs are there
    started = time.monotonic()

    async def empty() -> bool:
        return bool((await (await conn.execute(waiting)).fetchone())[0])  # type: ignore[index]

    drained = True
    try:
        await wait_for(empty, "the drain", within=config.drain_seconds)
    except RuntimeError:
        drained = False
    ended = sql.SQL(
        "SELECT (SELECT count(*) FROM {s}.job_history WHERE id = ANY(%(ids)s) AND state = 'completed'),"
        " (SELECT count(*) FROM {s}.job_history WHERE id = ANY(%(ids)s) AND state <> 'completed'),"
        " (SELECT count(*) FROM {s}.dead_jobs WHERE id = ANY(%(ids)s)),"
        " (SELECT count(*) FROM {s}.jobs WHERE id = ANY(%(ids)s))"
    ).format(s=ident)
    completed, other, dead, left = (await (await conn.execute(ended, {"ids": ids})).fetchone()) or (
        0,
        0,
        0,
        0,
    )
    return {
        "drained": drained,
        "drain_seconds": round(time.monotonic() - started, 2),
        "enqueued": len(ids),
        "completed": completed,
        "ended_otherwise": other,
        "dead": dead,
        "still_live": left,
        "missing": len(ids) - completed,
    }


def summarize(
    config: LoadConfig,
    sampler: Sampler,
    sources: dict[str, Counts],
    events: list[dict[str, Any]],
    drain: dict[str, Any],
    log_errors: dict[str, int],
    exit_codes: dict[str, int | None],
) -> dict[str, Any]:
    loaded = [s for s in sampler.samples if s["phase"] != "drained" and s["finished"]]
    first, last = (loaded[0], loaded[-1]) if loaded else (sampler.samples[0], sampler.samples[-1])
    end = sampler.samples[-1]
    rss = {}
    for name in first["rss_kib"]:
        before, after = first["rss_kib"][name], last["rss_kib"][name]
        peak = max((s["rss_kib"][name] or 0) for s in loaded) if loaded else after
        grew = before is not None and after is not None and after - before > max(0.10 * before, 5 * 1024)
        rss[name] = {"first_mib": _mib(before), "last_mib": _mib(after), "peak_mib": _mib(peak), "grew": grew}
    summary: dict[str, Any] = {
        "kind": "summary",
        "seconds": config.seconds,
        "rate": config.rate,
        "api_share": config.api_share,
        "enqueued": {name: sources[name].done for name in ("api", "sql")},
        "enqueued_per_second": round((sources["api"].done + sources["sql"].done) / config.seconds, 1),
        "errors": {name: c.errors for name, c in sources.items()},
        "first_errors": {name: c.first_error for name, c in sources.items() if c.first_error},
        "log_error_lines": log_errors,
        "exit_codes": exit_codes,
        "dashboard_loads": sources["dashboard"].done,
        "metrics_scrapes": sources["metrics"].done,
        "request_ms": {
            name: {
                "p50": percentile([1000 * x for x in c.latencies], 0.5),
                "p99": percentile([1000 * x for x in c.latencies], 0.99),
            }
            for name, c in sources.items()
        },
        "drain": drain,
        "not_completed_in_history": sampler.not_completed,
        "latency_ms": {
            "overall": {
                "p50": percentile(sampler.latencies, 0.5),
                "p99": percentile(sampler.latencies, 0.99),
                "max": round(max(sampler.latencies), 2) if sampler.latencies else None,
                "jobs": len(sampler.latencies),
            },
            "by_source": {
                name: {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "jobs": len(values)}
                for name, values in sampler.by_source.items()
            },
            "first_interval": {"p50": first["latency_p50_ms"], "p99": first["latency_p99_ms"]},
            "last_interval": {"p50": last["latency_p50_ms"], "p99": last["latency_p99_ms"]},
        },
        "tables_first": first["tables"],
        "tables_end": end["tables"],
        "rss": rss,
        # The driver keeps every job's id and latency: it grows by design, so it is not judged.
        "rss_grew": sorted(name for name, r in rss.items() if r["grew"] and name != "driver"),
        "loadavg": {
            "first": first["loadavg"],
            "last": last["loadavg"],
            "max_1min": max(s["loadavg"][0] for s in sampler.samples),
        },
        "samples": len(sampler.samples),
        "vacuums": sum(1 for e in events if e["event"] == "vacuum"),
    }
    marks = {e["event"]: e["at"] for e in events if e["event"].startswith("hold_")}
    if "hold_start" in marks and "hold_end" in marks:
        summary["hold_seconds"] = round(marks["hold_end"] - marks["hold_start"], 2)
    if config.hold_xmin:
        summary["phases"] = {
            phase: _phase(config, [s for s in loaded if s["phase"] == phase])
            for phase in ("before", "during", "after")
        }
    return summary


def _phase(config: LoadConfig, samples: list[dict[str, Any]]) -> dict[str, Any]:
    if not samples:
        return {}
    jobs = [s["tables"]["jobs"] for s in samples]
    return {
        "samples": len(samples),
        "finished_per_second": round(statistics.mean(s["finished_per_second"] or 0 for s in samples), 1),
        "latency_p50_ms_median": statistics.median(s["latency_p50_ms"] or 0 for s in samples),
        "latency_p99_ms_max": max(s["latency_p99_ms"] or 0 for s in samples),
        "backlog_max": max(s["backlog"] for s in samples),
        "jobs_dead_tuples_max": max(j["dead_tuples"] for j in jobs),
        "jobs_dead_tuples_last": jobs[-1]["dead_tuples"],
        "jobs_mib_first": round(jobs[0]["total_bytes"] / 2**20, 2),
        "jobs_mib_last": round(jobs[-1]["total_bytes"] / 2**20, 2),
        "jobs_index_mib_last": round(jobs[-1]["index_bytes"] / 2**20, 2),
        "oldest_xmin_age_max": max(s["oldest_xmin_age"] or 0 for s in samples),
        "metrics_counted_behind_seconds_max": max(s["metrics_counted_behind_seconds"] or 0 for s in samples),
        "loadavg_1min_max": max(s["loadavg"][0] for s in samples),
    }


def _mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib is not None else None


def _jsonable(config: LoadConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k != "url"}


# -- the command line ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", required=True, help="a server's admin URL; the run makes its own database"
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="jobs/s enqueued in all")
    parser.add_argument("--api-share", type=float, default=0.5, help="the share enqueued through the API")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--dashboard-seconds", type=float, default=3.0)
    parser.add_argument("--scrape-seconds", type=float, default=15.0, help="GET /metrics every (0: never)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=20, help="each worker's")
    parser.add_argument("--hold-xmin", type=float, default=0.0, help="seconds a transaction holds the xmin")
    parser.add_argument("--hold-after", type=float, default=120.0, help="seconds of load before the hold")
    parser.add_argument("--vacuum-seconds", type=float, default=None)
    parser.add_argument("--drain-seconds", type=float, default=120.0)
    parser.add_argument(
        "--out", type=Path, default=Path("/work/runs") / time.strftime("sustained-%Y%m%dT%H%M%S")
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    options = parser.parse_args()
    from conveyor.db import migrations

    name = time.strftime("conveyor_sustained_%Y%m%d%H%M%S")
    with psycopg.connect(options.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(options.database_url)._replace(path=f"/{name}"))
    try:
        migrations.upgrade(url, "conveyor")
        config = LoadConfig(
            url=url,
            schema="conveyor",
            seconds=options.minutes * 60,
            rate=options.rate,
            out=options.out,
            api_share=options.api_share,
            sample_seconds=options.sample_seconds,
            dashboard_seconds=options.dashboard_seconds,
            scrape_seconds=options.scrape_seconds,
            workers=options.workers,
            worker_concurrency=options.concurrency,
            hold_xmin=options.hold_xmin,
            hold_after=options.hold_after,
            vacuum_seconds=options.vacuum_seconds,
            drain_seconds=options.drain_seconds,
            quiet=options.quiet,
        )
        summary = asyncio.run(run(config))
    finally:
        if not options.keep_database:
            with psycopg.connect(options.database_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if options.quiet:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
