"""The scheduler: fires cron schedules and keeps house, on whichever process is elected.

Any number of scheduler processes may run; one leads at a time (see ``leader``). Every
process writes the schedules its code declares on start (keeping an operator's pause, and
removing none unless told to prune). The leader, every tick:

- fires each due schedule in its own transaction: it locks the schedule row (SKIP LOCKED),
  works out the fire times owed since ``next_fire_at``, inserts each fire's row and job
  (``fire_schedule``: unique on schedule and fire time, so a fire happens once even if two
  processes get to it), and moves ``next_fire_at`` on;
- in a task of its own, so that firing and lease renewal never wait on it: promotes due
  delayed jobs and rescues expired leases (workers do this too; both are idempotent), and
  now and then applies retention and creates partitions ahead, within a time budget, and
  every ``metrics_interval`` runs the metrics' counting step (``counting``) and counts the
  rollup behind ``queue_stats`` (so the overview reads at most a few minutes of job_history).

Fire times owed are handled like this. A fire at most ``on_time_window`` late (a leader
hand-over, a slow tick) fires on its own, marked late if it is. Fires older than that were
missed (no scheduler ran): the catch-up policy ``skip`` records the missed window without
a job, ``once`` enqueues one job for the whole window. A new or redefined schedule owes the
fires from its definition on (so one defined a moment before a fire time still fires it). A
resumed one owes, if fire times passed while it was paused, what its policy says: one
catch-up job (``once``) or a skipped window (``skip``).

A schedule the database refuses for good (an unknown queue, say) stops with the reason in
``schedules.error``; a passing failure (a lost connection, a deadlock) is retried next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import jsonb
from ..clock import Clock, DatabaseClock
from ..cron import Cron
from ..db.database import Database, Transaction
from ..db.errors import is_transient
from ..errors import ConfigurationError, ConveyorError
from ..settings import Settings
from ..tasks import Registry, default_registry
from .leader import Elector
from .maintenance import Maintenance
from .notifier import Notifier
from .retention import apply_retention, count_before_removing
from .stopping import cancel_and_wait

log = logging.getLogger("conveyor.scheduler")

SCHEDULES_CHANGED = "#schedules"  # NOTIFY payload; no queue name can start with "#"


@dataclass(frozen=True)
class SchedulerConfig:
    """How a scheduler runs. Times are in seconds."""

    lease: float = 15.0
    tick: float = 1.0
    on_time_window: float = 300.0
    retention_interval: float = 600.0
    retention_budget: float = 60.0
    metrics_interval: float = 60.0
    upkeep_interval: float = 3600.0
    prune_declared: bool = False  # remove code schedules this process's code does not declare

    def __post_init__(self) -> None:
        if not self.tick > 0 or self.lease <= 2 * self.tick:
            raise ConfigurationError("the scheduler's lease must last longer than two ticks")
        if not self.on_time_window >= 0:
            raise ConfigurationError("on_time_window must not be negative")
        for name in ("retention_interval", "retention_budget", "metrics_interval", "upkeep_interval"):
            if not getattr(self, name) > 0:  # NaN too: a housekeeping step would never run again
                raise ConfigurationError(f"{name} must be a positive number of seconds")


@dataclass(frozen=True)
class DueSchedule:
    name: str
    cron: str
    timezone: str
    catch_up: str
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    resumed: bool
    defined_at: datetime
    now: datetime


@dataclass
class FireReport:
    taken: int = 0  # schedules looked at
    fired: int = 0
    late: int = 0
    caught_up: int = 0
    skipped: int = 0
    failed: int = 0


class Scheduler:
    def __init__(
        self,
        database_url: str | None = None,
        *,
        schema: str | None = None,
        registry: Registry | None = None,
        config: SchedulerConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        settings = Settings.from_env(database_url, schema)
        if settings.database_url is None:
            raise ConfigurationError("no database: set DATABASE_URL or pass database_url")
        self.config = config or SchedulerConfig()
        self.registry = registry if registry is not None else default_registry
        self.clock: Clock = clock or DatabaseClock()
        # Every statement carries deadlines (settings.timeouts): a scheduler whose database stops
        # answering drops the connection and tries again next tick instead of hanging.
        self.db = Database(
            settings.database_url, settings.schema, min_size=1, max_size=3, timeouts=settings.timeouts
        )
        self.elector = Elector(self.db, self.clock, ttl=self.config.lease, tick=self.config.tick)
        self.maintenance = Maintenance(self.db, self.clock, upkeep_interval=self.config.upkeep_interval)
        self.notifier = Notifier(
            settings.listen_url or settings.database_url,
            self.db.queries,
            self._on_notify,
            timeouts=settings.timeouts,
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._next_retention = 0.0
        self._next_count = 0.0
        self.started = asyncio.Event()
        self.ticks = 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await self.db.open()
        background = [
            asyncio.create_task(self.notifier.run(), name="conveyor-scheduler-notifier"),
            asyncio.create_task(self._housekeeping_loop(), name="conveyor-scheduler-housekeeping"),
        ]
        try:
            await self.sync_declared()
            self.started.set()
            while not self._stopping.is_set():
                pause = await self.fire_round()
                self._wake.clear()
                try:
                    async with asyncio.timeout(pause):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            await cancel_and_wait(background)
            await self.elector.resign()
            await self.db.close()

    async def tick(self) -> float:
        """One whole round, housekeeping included (tests drive the scheduler with this)."""
        pause = await self.fire_round()
        if self.elector.is_leader:
            await self.keep_house()
        return pause

    async def fire_round(self) -> float:
        """Elect, and if leading fire what is due. Returns how long to wait for the next round."""
        self.ticks += 1
        if not await self.elector.attempt():
            return self.config.tick
        try:
            report = await self.fire_due()
            pause = await self._until_next_due()
        except Exception:
            log.exception("scheduler round failed")
            return self.config.tick
        if pause == 0 and report.taken == report.failed:
            # What is due is locked by someone else (or failed): do not spin on it.
            return self.config.tick
        return pause

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick)
            if self.elector.is_leader:
                try:
                    await self.keep_house()
                except Exception:
                    log.exception("scheduler housekeeping failed")

    # -- schedules ---------------------------------------------------------------------

    async def sync_declared(self) -> None:
        """Write the schedules this process's code declares (done by every process on start)."""
        if not len(self.registry) and not self.registry.schedules():
            log.info("no task modules loaded: schedules declared in code are left as they are")
            return
        specs = self.registry.schedules()
        unknown = [f"{s.name} ({s.task})" for s in specs if self.registry.get(s.task) is None]
        if unknown:
            raise ConfigurationError(
                f"schedules name tasks that no loaded module registers: {', '.join(unknown)}; "
                "import their modules (--tasks) or fix the names"
            )
        await self.db.create_queues(sorted({s.queue for s in specs if s.queue is not None}))
        rows = await self.db.fetch(
            "sync_schedules",
            {
                "names": [s.name for s in specs],
                "crons": [s.cron for s in specs],
                "timezones": [s.timezone for s in specs],
                "tasks": [s.task for s in specs],
                "args": [jsonb.dumps(s.args) for s in specs],
                "queues": [s.queue for s in specs],
                "priorities": [s.priority for s in specs],
                "max_attempts": [s.max_attempts for s in specs],
                "catch_ups": [s.catch_up for s in specs],
                "prune": self.config.prune_declared,
                "now": self.clock.now(),
                "channel": self.db.queries.channel,
            },
        )
        upserted, removed, _ = rows[0]
        log.info("schedules declared in code: %d written, %d no longer declared removed", upserted, removed)

    async def fire_due(self) -> FireReport:
        """Fire every due schedule, each in its own transaction."""
        report = FireReport()
        failed: list[str] = []
        while self.elector.is_leader:
            name = None
            try:
                async with self.db.transaction() as tx:
                    rows = await tx.fetch("take_due_schedule", {"now": self.clock.now(), "skip": failed})
                    if not rows:
                        break
                    due = DueSchedule(*rows[0])
                    name = due.name
                    report.taken += 1
                    await self._fire_one(tx, due, report)
            except Exception as exc:
                if name is None:
                    raise
                report.failed += 1
                failed.append(name)
                if is_transient(exc):
                    log.warning("schedule %r could not fire now (%s); it will next tick", name, exc)
                    continue
                # The database refuses it for good (the transaction is gone): it stops, with
                # the reason, until it is resumed or redefined; the others go on.
                log.exception("schedule %r failed to fire and stops", name)
                await self.db.fetch(
                    "schedule_failed", {"name": name, "error": f"{type(exc).__name__}: {exc}"}
                )
        return report

    async def _fire_one(self, tx: Transaction, due: DueSchedule, report: FireReport) -> None:
        name, catch_up, now = due.name, due.catch_up, due.now
        next_fire_at, last_fire_at = due.next_fire_at, due.last_fire_at
        try:
            cron = Cron(due.cron, due.timezone)
        except ConveyorError as exc:
            log.error("schedule %r cannot fire: %s", name, exc)
            await tx.fetch("schedule_failed", {"name": name, "error": str(exc)})
            return
        last = last_fire_at
        if next_fire_at is None:
            # New or redefined: it owes the fires from its definition on.
            next_fire_at = cron.next_after(due.defined_at)
        if next_fire_at > now:
            pass  # nothing due yet
        elif due.resumed:
            # Every fire time from next_fire_at to the resume was missed while paused.
            kind = "catch_up" if catch_up == "once" else "skipped"
            await self._fire(tx, name, next_fire_at, kind, now, window_end=now)
            if kind == "catch_up":
                report.caught_up += 1
                last = next_fire_at
            else:
                report.skipped += 1
        else:
            window_start = now - timedelta(seconds=self.config.on_time_window)
            owed_from = next_fire_at
            if next_fire_at < window_start:
                kind = "catch_up" if catch_up == "once" else "skipped"
                await self._fire(tx, name, next_fire_at, kind, now, window_end=window_start)
                log.warning(
                    "schedule %r missed its fires from %s to %s (no scheduler was running): %s",
                    name,
                    next_fire_at.isoformat(),
                    window_start.isoformat(),
                    "enqueued one job for them" if kind == "catch_up" else "skipped them",
                )
                if kind == "catch_up":
                    report.caught_up += 1
                    last = next_fire_at
                else:
                    report.skipped += 1
                owed_from = cron.next_after(window_start - timedelta(microseconds=1))
            for fire_time in [owed_from, *cron.fire_times(owed_from, now)] if owed_from <= now else []:
                late = (now - fire_time).total_seconds() > self.config.tick + 1
                if await self._fire(tx, name, fire_time, "late" if late else "on_time", now):
                    report.fired += 1
                    report.late += late
                last = fire_time
        await tx.fetch(
            "advance_schedule",
            {"name": name, "next_fire_at": cron.next_after(now), "last_fire_at": last},
        )

    async def _fire(
        self,
        tx: Transaction,
        name: str,
        fire_time: datetime,
        kind: str,
        now: datetime,
        *,
        window_end: datetime | None = None,
    ) -> int | None:
        rows = await tx.fetch(
            "fire_schedule",
            {"name": name, "fire_time": fire_time, "kind": kind, "window_end": window_end, "now": now},
        )
        return rows[0][0] if rows else None

    async def _until_next_due(self) -> float:
        rows = await self.db.fetch("next_schedule_due", {"now": self.clock.now()})
        unset, earliest, now = rows[0]
        if unset:
            return 0.0
        if earliest is None:
            return self.config.tick
        wait: float = (earliest - now).total_seconds()
        return max(0.0, min(self.config.tick, wait))

    # -- housekeeping ------------------------------------------------------------------

    async def keep_house(self) -> None:
        await self.maintenance.run_once()
        moment = time.monotonic()
        if moment >= self._next_retention:
            self._next_retention = moment + self.config.retention_interval
            await self.apply_retention()
        elif moment >= self._next_count:  # retention counts first anyway
            self._next_count = moment + self.config.metrics_interval
            await count_before_removing(
                self.db, now=self.clock.now(), deadline=time.monotonic() + self.config.retention_budget
            )

    async def apply_retention(self) -> dict[str, int]:
        return await apply_retention(self.db, now=self.clock.now(), budget=self.config.retention_budget)

    def _on_notify(self, payload: str) -> None:
        if payload == SCHEDULES_CHANGED:
            self._wake.set()
