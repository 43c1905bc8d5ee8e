"""The benchmark workloads, written once for every Python adapter.

An adapter (``bench/peers/<system>/adapter.py``) subclasses :class:`Adapter` and calls
:func:`main`. Run as ``adapter.py <workload> --url URL [options]`` it prints one JSON line
with its results; run as ``adapter.py worker ...`` it is one worker process (started by the
workloads here). Workers record, per job, the job's number, when it was enqueued and when its
handler started, into a file; the workloads compute rates, latencies and the exactly-once check
from those files, so every system is measured the same way, from inside its handler.

Only the standard library and psycopg are used, so any peer's virtual environment can run it.

Workloads (the options and their defaults):
  enqueue  --n 10000            one call and one transaction per job, one client
  bulk     --n 100000           the system's bulk API
  drain    --n 50000 --procs 1  n jobs waiting, then procs worker processes drain them
  latency  --count 300 --interval 0.02   an idle worker; jobs enqueued one by one
  load     --rate 1000 --duration 60     steady enqueueing while workers drain
  delayed  --n 50000 --delayed 200000    drain with a backlog scheduled for tomorrow
  soak     --n 1000000 [--hold-xmin]     throughput by tenths; sizes at the end
  concurrent-enqueue --producer-counts 1,8,32 --duration 3
                                         single-job transactions from 1, 8, 32 producers at
                                         once, each on its own connection, in every variant
                                         the adapter names (Adapter.enqueue_variants)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

# -- what an adapter provides ------------------------------------------------------------


class Adapter:
    """One system under test. Methods are async; an adapter for a sync client may run it in
    threads. Payloads are small dicts: {"i": job number, "t": time.time() at enqueue}."""

    name = "?"
    concurrency = 10  # the system's recommended setting for no-op async jobs, per worker process

    def __init__(self, url: str) -> None:
        self.url = url

    async def setup(self) -> None:
        """Install the system's schema in this (fresh) database."""

    async def open(self) -> None:
        """Open the client used to enqueue."""

    async def close(self) -> None:
        pass

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        """Enqueue one job in its own call and transaction."""
        raise NotImplementedError

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        """Enqueue many jobs through the system's bulk API (due after ``delay`` seconds)."""
        raise NotImplementedError

    # Ways of enqueueing one job that concurrent-enqueue compares side by side; the first is
    # enqueue_one. An adapter naming more implements enqueue_variant.
    enqueue_variants: tuple[str, ...] = ("default",)

    async def enqueue_variant(self, variant: str, payload: dict[str, Any]) -> None:
        await self.enqueue_one(payload)

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        """Run one worker until the process is stopped; its no-op handler calls
        ``record(payload)`` first thing."""
        raise NotImplementedError

    async def sizes(self) -> dict[str, int]:
        """Bytes taken by the system's tables and indexes (their total relation sizes)."""
        return {}

    def run_forever(self, coro: Any) -> None:
        """Run a worker process's coroutine on the event loop the system's own command uses."""
        asyncio.run(coro)


async def table_sizes(url: str, prefix: str, schema: str = "public") -> dict[str, int]:
    """Total relation sizes (table, indexes, TOAST) of the tables in ``schema`` named ``prefix...``."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        rows = await (
            await conn.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s",
                [schema, prefix + "%"],
            )
        ).fetchall()
    return {name: int(size) for name, size in rows}


# -- the worker side ---------------------------------------------------------------------


class Recorder:
    """Collects (job number, enqueued at, started at) in memory; a thread writes them out.

    A deque, because its append and popleft are atomic: a handler appending while the writer
    takes rows away loses nothing (swapping a list out could drop an append in flight)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._rows: deque[tuple[int, float, float]] = deque()
        self._count = 0
        self._lock = threading.Lock()
        self._file = path.open("a", buffering=1 << 16)
        self._thread = threading.Thread(target=self._flush_forever, daemon=True)
        self._thread.start()

    def __call__(self, payload: dict[str, Any]) -> None:
        self._rows.append((payload["i"], payload.get("t", 0.0), time.time()))

    def flush(self) -> None:
        with self._lock:
            rows = [self._rows.popleft() for _ in range(len(self._rows))]
            if rows:
                self._file.write("".join(f"{i} {t:.6f} {s:.6f}\n" for i, t, s in rows))
                self._file.flush()
                self._count += len(rows)
            # Written aside and renamed: a reader never sees the file empty.
            Path(f"{self._path}.count.tmp").write_text(str(self._count))
            os.replace(f"{self._path}.count.tmp", f"{self._path}.count")

    def _flush_forever(self) -> None:
        while True:
            time.sleep(0.05)
            self.flush()


def _worker_main(adapter: Adapter, args: argparse.Namespace) -> None:
    record = Recorder(Path(args.record))

    def stop(*_: Any) -> None:
        record.flush()
        os._exit(0)  # benchmarks end workers abruptly; everything they did is recorded

    signal.signal(signal.SIGTERM, stop)
    adapter.run_forever(adapter.run_worker(args.concurrency, record))


class Workers:
    """Worker processes of an adapter, and what they recorded."""

    def __init__(self, script: str, url: str, procs: int, concurrency: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-"))
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    script,
                    "worker",
                    "--url",
                    url,
                    "--concurrency",
                    str(concurrency),
                    "--record",
                    str(self.folder / f"w{n}.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # stop() ends whatever a worker started, too
            )
            for n in range(procs)
        ]

    def count(self) -> int:
        total = 0
        for path in self.folder.glob("*.count"):
            with contextlib.suppress(OSError, ValueError):  # being rewritten
                total += int(path.read_text() or 0)
        return total

    def wait_for(self, n: int, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"a worker died: {process.stderr.read()[-3000:] if process.stderr else ''}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count()} of {n} jobs ran within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            # A worker's own children (a process pool) may outlive it and hold its stderr open.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=5)

    def rows(self) -> list[tuple[int, float, float]]:
        rows = []
        for path in self.folder.glob("*.log"):
            for line in path.read_text().splitlines():
                i, t, s = line.split()
                rows.append((int(i), float(t), float(s)))
        return rows


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _exactly_once(rows: Sequence[tuple[int, float, float]], n: int) -> dict[str, Any]:
    seen = [0] * n
    for i, _, _ in rows:
        if 0 <= i < n:
            seen[i] += 1
    return {
        "executed": len(rows),
        "unique": sum(1 for c in seen if c),
        "twice": sum(1 for c in seen if c > 1),
    }


def _process_cpu(pid: int) -> float:
    """User and system CPU seconds of a process on this machine (0.0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_now(url: str, workers: Workers) -> dict[str, dict[int, float]]:
    """CPU so far of the worker processes and of each of the server's processes (only
    readable when the server runs on this machine, as the benchmarks' loopback server does)."""
    with psycopg.connect(url) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity")]
    return {
        "worker": {p.pid: _process_cpu(p.pid) for p in workers.processes},
        "server": {pid: _process_cpu(pid) for pid in pids},
    }


def _cpu_per_job(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], jobs: int
) -> dict[str, Any]:
    """Microseconds of CPU per job between two readings, of the workers and of the server
    (a server process that started in between counts from zero)."""
    if jobs <= 0:
        return {}
    spent = {
        side: sum(cpu - before[side].get(pid, 0.0) for pid, cpu in after[side].items() if cpu)
        for side in after
    }
    return {f"{side}_cpu_us_per_job": round(seconds / jobs * 1e6, 2) for side, seconds in spent.items()}


def _rate(rows: Sequence[tuple[int, float, float]]) -> tuple[float, float]:
    starts = sorted(s for _, _, s in rows)
    seconds = starts[-1] - starts[0] if len(starts) > 1 else float("nan")
    return seconds, len(starts) / seconds if seconds else float("nan")


# -- the workloads -----------------------------------------------------------------------


async def _enqueue(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    await adapter.setup()
    await adapter.open()
    try:
        started = time.perf_counter()
        for i in range(args.n):
            await adapter.enqueue_one({"i": i, "t": time.time()})
        seconds = time.perf_counter() - started
    finally:
        await adapter.close()
    return {"jobs": args.n, "seconds": seconds, "rate": args.n / seconds}


async def _bulk(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    await adapter.setup()
    payloads = [{"i": i, "t": 0.0} for i in range(args.n)]
    await adapter.open()
    try:
        started = time.perf_counter()
        await adapter.enqueue_many(payloads)
        seconds = time.perf_counter() - started
    finally:
        await adapter.close()
    return {"jobs": args.n, "seconds": seconds, "rate": args.n / seconds}


async def _prefill(adapter: Adapter, n: int, *, delayed: int = 0) -> None:
    await adapter.open()
    try:
        chunk = 50_000
        for start in range(0, delayed, chunk):
            count = min(chunk, delayed - start)
            await adapter.enqueue_many([{"i": -1, "t": 0.0}] * count, delay=86_400)
        for start in range(0, n, chunk):
            await adapter.enqueue_many([{"i": i, "t": 0.0} for i in range(start, min(n, start + chunk))])
    finally:
        await adapter.close()
    # What autovacuum would soon do on a production server (the test server here runs with
    # autovacuum off): without statistics one peer's fetch sorts the whole backlog per job.
    async with await psycopg.AsyncConnection.connect(adapter.url, autocommit=True) as conn:
        await conn.execute("ANALYZE")


async def _drain(adapter: Adapter, args: argparse.Namespace, script: str) -> dict[str, Any]:
    await adapter.setup()
    await _prefill(adapter, args.n, delayed=args.delayed)
    workers = Workers(script, adapter.url, args.procs, args.concurrency or adapter.concurrency)
    try:
        # CPU is counted from the first job recorded, so start-up and imports stay out of it.
        workers.wait_for(1, timeout=args.timeout)
        first = workers.count()
        before = _cpu_now(adapter.url, workers)
        workers.wait_for(args.n, timeout=args.timeout)
        cpu = _cpu_per_job(before, _cpu_now(adapter.url, workers), workers.count() - first)
    finally:
        workers.stop()
    rows = workers.rows()
    seconds, rate = _rate(rows)
    return {
        "jobs": args.n,
        "seconds": seconds,
        "rate": rate,
        **cpu,
        **_exactly_once(rows, args.n),
        "procs": args.procs,
        "concurrency": args.concurrency or adapter.concurrency,
        "delayed": args.delayed,
    }


async def _latency(adapter: Adapter, args: argparse.Namespace, script: str) -> dict[str, Any]:
    await adapter.setup()
    workers = Workers(script, adapter.url, 1, args.concurrency or adapter.concurrency)
    await adapter.open()
    try:
        # Warm up: the worker is ready once it ran a job.
        await adapter.enqueue_one({"i": args.count, "t": time.time()})
        workers.wait_for(1, timeout=60)
        await asyncio.sleep(1.0)  # then idle
        for i in range(args.count):
            await adapter.enqueue_one({"i": i, "t": time.time()})
            await asyncio.sleep(args.interval)
        workers.wait_for(args.count + 1, timeout=60)
    finally:
        await adapter.close()
        workers.stop()
    waits = [(s - t) * 1000 for i, t, s in workers.rows() if i < args.count]
    return {
        "count": len(waits),
        "p50_ms": percentile(waits, 50),
        "p95_ms": percentile(waits, 95),
        "p99_ms": percentile(waits, 99),
        "max_ms": max(waits),
    }


async def _load(adapter: Adapter, args: argparse.Namespace, script: str) -> dict[str, Any]:
    await adapter.setup()
    workers = Workers(script, adapter.url, args.procs, args.concurrency or adapter.concurrency)
    producers = args.producers
    await adapter.open()
    total = int(args.rate * args.duration)
    backlog: list[int] = []
    try:
        await adapter.enqueue_one({"i": total, "t": time.time()})
        workers.wait_for(1, timeout=60)
        started = time.monotonic()
        sent = 0

        async def produce(offset: int) -> None:
            nonlocal sent
            for i in range(offset, total, producers):
                due = started + i / args.rate
                pause = due - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                await adapter.enqueue_one({"i": i, "t": time.time()})
                sent += 1

        async def watch() -> None:
            while True:
                await asyncio.sleep(1.0)
                backlog.append(sent - (workers.count() - 1))

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(produce(p) for p in range(producers)))
        produced_in = time.monotonic() - started
        watcher.cancel()
        workers.wait_for(total + 1, timeout=args.duration * 10)
    finally:
        await adapter.close()
        workers.stop()
    rows = [r for r in workers.rows() if r[0] < total]
    waits = [(s - t) * 1000 for _, t, s in rows]
    tail = backlog[len(backlog) // 2 :] or [0]
    return {
        "target_rate": args.rate,
        "achieved_rate": total / produced_in,
        "p50_ms": percentile(waits, 50),
        "p99_ms": percentile(waits, 99),
        "backlog": backlog,
        "backlog_second_half_max": max(tail),
        **_exactly_once(rows, total),
    }


async def _soak(adapter: Adapter, args: argparse.Namespace, script: str) -> dict[str, Any]:
    await adapter.setup()
    await _prefill(adapter, args.n)
    workers = Workers(script, adapter.url, 1, args.concurrency or adapter.concurrency)
    held: list[float] = []
    try:
        if args.hold_xmin:
            # A transaction left open from a third of the way to two thirds: what a long
            # report, a forgotten psql session or a replica's feedback does to a queue.
            workers.wait_for(args.n // 3, timeout=args.timeout)
            with psycopg.connect(adapter.url) as holder:
                holder.execute("SELECT txid_current()")
                held.append(time.time())
                workers.wait_for(2 * args.n // 3, timeout=args.timeout)
                held.append(time.time())
                holder.rollback()
        workers.wait_for(args.n, timeout=args.timeout)
    finally:
        workers.stop()
    rows = sorted(workers.rows(), key=lambda r: r[2])
    tenth, third = len(rows) // 10, len(rows) // 3
    first = _rate(rows[:tenth])[1]
    last = _rate(rows[-tenth:])[1]
    seconds, rate = _rate(rows)
    result = {
        "jobs": args.n,
        "seconds": seconds,
        "rate": rate,
        "first_tenth_rate": first,
        "last_tenth_rate": last,
        "last_to_first": last / first,
        # The third a --hold-xmin run holds its transaction over: what its held rate compares with.
        "middle_third_rate": _rate(rows[third : 2 * third])[1],
        **_exactly_once(rows, args.n),
    }
    if held:
        inside = [r for r in rows if held[0] <= r[2] <= held[1]]
        result["held_rate"] = _rate(inside)[1]
        result["held_to_first"] = result["held_rate"] / first
    await adapter.open()
    try:
        result["sizes"] = await adapter.sizes()
    finally:
        await adapter.close()
    return result


async def _concurrent_enqueue(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """Jobs/s enqueued one per transaction by P producers at once, each with its own client
    (its own connection), for each P and each of the adapter's variants. Cells are measured
    interleaved (every variant at P, then the next P) into one table that keeps its rows."""
    await adapter.setup()
    rates: dict[str, dict[str, float]] = {variant: {} for variant in adapter.enqueue_variants}
    numbers = iter(range(1 << 62))
    for count in [int(c) for c in args.producer_counts.split(",")]:
        for variant in adapter.enqueue_variants:
            producers = [type(adapter)(adapter.url) for _ in range(count)]
            for producer in producers:
                await producer.open()
            try:
                started = time.perf_counter()
                deadline = started + args.duration
                done = await asyncio.gather(*(_produce(p, variant, deadline, numbers) for p in producers))
                seconds = time.perf_counter() - started
            finally:
                for producer in producers:
                    await producer.close()
            rates[variant][str(count)] = sum(done) / seconds
    return {"duration": args.duration, "rates": rates}


async def _produce(producer: Adapter, variant: str, deadline: float, numbers: Any) -> int:
    done = 0
    while time.perf_counter() < deadline:
        await producer.enqueue_variant(variant, {"i": next(numbers), "t": time.time()})
        done += 1
    return done


# -- the command line --------------------------------------------------------------------


def main(adapter_class: type[Adapter], script: str) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "workload",
        choices=[
            "worker",
            "enqueue",
            "bulk",
            "drain",
            "latency",
            "load",
            "delayed",
            "soak",
            "concurrent-enqueue",
        ],
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--record")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--delayed", type=int, default=0)
    parser.add_argument("--hold-xmin", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--producer-counts", default="1,8,32")
    args = parser.parse_args()
    adapter = adapter_class(args.url)
    if args.workload == "worker":
        _worker_main(adapter, args)
        return
    defaults = {"enqueue": 10_000, "bulk": 100_000, "drain": 50_000, "delayed": 50_000, "soak": 1_000_000}
    if args.n is None:
        args.n = defaults.get(args.workload, 0)
    if args.workload == "delayed" and not args.delayed:
        args.delayed = 200_000
    run = {
        "enqueue": lambda: _enqueue(adapter, args),
        "bulk": lambda: _bulk(adapter, args),
        "drain": lambda: _drain(adapter, args, script),
        "delayed": lambda: _drain(adapter, args, script),
        "latency": lambda: _latency(adapter, args, script),
        "load": lambda: _load(adapter, args, script),
        "soak": lambda: _soak(adapter, args, script),
        "concurrent-enqueue": lambda: _concurrent_enqueue(adapter, args),
    }[args.workload]
    result = asyncio.run(run())
    print(json.dumps({"system": adapter.name, "workload": args.workload, **result}))
