"""Importing procrastinate's jobs into Conveyor (docs/coming-from-procrastinate.md).

Contract:

- The source is procrastinate's ``procrastinate_jobs`` (and ``procrastinate_events``, for
  the times) in a schema of the same database; it is read with SQL alone.
- Waiting jobs (``todo``) become waiting or scheduled Conveyor jobs, enqueued through
  :meth:`Conveyor.enqueue_many` on the batch's connection; failed ones, if asked for, go to
  the dead-letter table; running ones (``doing``) are refused unless asked for.
- Each batch is one transaction: imports of one source take turns batch by batch (an
  advisory lock), its source rows are locked (``FOR UPDATE SKIP LOCKED``),
  its Conveyor jobs written, each source job recorded in ``imported_jobs`` and its source
  row cancelled, deleted or kept as asked, all committed together. A crash loses nothing
  and imports nothing twice; a re-run goes on where it stopped.
- A job its Conveyor task refuses (arguments that do not fit, an unknown queue, a lock too
  long for a key) is reported with the reason and left in procrastinate as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..errors import ArgumentsError, ConfigurationError, ConveyorError, InvalidOptionError, UnknownTaskError
from ..task_map import TaskMap
from .client import Conveyor
from .enqueue import JobRequest, PreparedJob, prepare, unknown_queue_message

WAITING = "todo"
RUNNING = ("doing", "aborting")  # 'aborting': procrastinate 2.x's, still in 3.x's type
FAILED = "failed"
STATUSES = (WAITING, *RUNNING, FAILED)
SOURCE_ROWS = ("cancel", "delete", "keep")
# The columns of procrastinate_jobs the import reads (procrastinate 3.x).
JOB_COLUMNS = (
    "id",
    "queue_name",
    "task_name",
    "priority",
    "lock",
    "queueing_lock",
    "args",
    "status",
    "scheduled_at",
    "attempts",
)


@dataclass(frozen=True)
class ImportPlan:
    """What to import and how. ``source_rows``: what becomes of an imported source row:
    ``cancel`` (procrastinate never runs it; the default), ``delete`` or ``keep``."""

    source_schema: str
    task_map: TaskMap
    include_failed: bool = False
    include_doing: bool = False
    skip_unmapped: bool = False
    source_rows: str = "cancel"
    batch_size: int = 500

    @property
    def source(self) -> str:
        """The ledger's name for this source."""
        return f"procrastinate:{self.source_schema}"

    def action(self, task: str, status: str) -> str:
        """What the import does with the jobs of a source task in a status: ``import``,
        ``dead-letter``, or why not: ``unmapped``, ``running``, ``failed``."""
        if self.task_map.target(task) is None:
            return "unmapped"
        if status in RUNNING and not self.include_doing:
            return "running"
        if status == FAILED:
            return "dead-letter" if self.include_failed else "failed"
        return "import"


@dataclass
class TaskStatus:
    """The jobs of one source task in one source status: how many were there to import at
    the start, and what became of them."""

    task: str
    status: str
    target: str | None
    action: str
    found: int
    imported: int = 0
    refused: int = 0


@dataclass
class ImportReport:
    """What an import found and did. ``refused``: source job id -> why its Conveyor task
    would not take it (it stays in procrastinate); ``left``: jobs still there to import
    after the run (the refused, and any a procrastinate worker held or deferred meanwhile)."""

    source: str
    dry_run: bool
    rows: list[TaskStatus]
    imported_before: int
    waiting: int = 0
    scheduled: int = 0
    dead: int = 0
    batches: int = 0
    refused: dict[int, str] = field(default_factory=dict)
    left: int | None = None
    refusal: str | None = None  # why a run would refuse to start (a preview's finding)

    @property
    def imported(self) -> int:
        return self.waiting + self.scheduled + self.dead

    @property
    def skipped(self) -> int:
        """Jobs not taken by design: of unmapped tasks, and failed ones not asked for."""
        return sum(row.found for row in self.rows if row.action in ("unmapped", "failed"))

    def row(self, task: str, status: str) -> TaskStatus | None:
        """The row of a source task and status (None: the preview found no such job)."""
        for row in self.rows:
            if row.task == task and row.status == status:
                return row
        return None


@dataclass(frozen=True)
class SourceJob:
    id: int
    queue: str
    task: str
    priority: int
    lock: str | None
    queueing_lock: str | None
    args: Any
    status: str
    scheduled_at: datetime | None
    unusable_time: str | None  # a scheduled_at out of Python's range (then scheduled_at is None)
    attempts: int
    deferred_at: datetime | None
    failed_at: datetime | None


class ProcrastinateImport:
    """One import run: :meth:`preview` reads what there is; :meth:`run` imports it."""

    def __init__(self, client: Conveyor, plan: ImportPlan) -> None:
        self.client = client
        self.plan = plan
        self._queries = client.db.queries
        self._tables = {
            "jobs": (plan.source_schema, "procrastinate_jobs"),
            "events": (plan.source_schema, "procrastinate_events"),
        }
        self._search_path = sql.Identifier(plan.source_schema).as_string(None)

    def _compose(self, name: str) -> bytes:
        """A query naming procrastinate's tables (composed as identifiers)."""
        return self._queries.compose(name, **self._tables)

    async def preview(self) -> ImportReport:
        """The source's jobs not imported yet, by task and status, and what a run would do
        with them; raises ConveyorError if the schema holds no procrastinate 3.x tables."""
        async with self.client.db.connection() as conn:
            await self._check_source(conn)
            params = {"statuses": list(STATUSES), "source": self.plan.source}
            try:
                before = await (await conn.execute(self._queries["count_imported"], params)).fetchone()
            except psycopg.errors.UndefinedTable:
                raise ConfigurationError(
                    f"Conveyor's schema {self._queries.schema!r} has no import ledger (imported_jobs, "
                    "schema version 14): run `conveyor migrate` first"
                ) from None
            counts = await (await conn.execute(self._compose("count_procrastinate_jobs"), params)).fetchall()
        rows = []
        for task, status, count in counts:
            target = self.plan.task_map.target(task)
            name = target.task if target is not None else None
            rows.append(TaskStatus(task, status, name, self.plan.action(task, status), count))
        report = ImportReport(self.plan.source, True, rows, before[0] if before else 0)
        report.refusal = self.refusal(report)
        return report

    async def run(self, on_batch: Callable[[ImportReport], None] | None = None) -> ImportReport:
        """Import, batch by batch; refuses (ConveyorError, before anything is written) when the
        source has jobs of unmapped tasks (without ``skip_unmapped``), running jobs (without
        ``include_doing``) or maps to Conveyor tasks no one knows."""
        report = await self.preview()
        report.dry_run = False
        self._refuse(report)
        wanted = [row for row in report.rows if row.action in ("import", "dead-letter")]
        tasks = sorted({row.task for row in wanted})
        statuses = sorted({row.status for row in wanted})
        if not wanted:
            report.left = 0
            return report
        targets = sorted({row.target for row in wanted if row.target is not None})
        try:
            await self.client.task_registry(targets)
        except UnknownTaskError as exc:
            raise UnknownTaskError(
                f"{exc}. The mapping file names it: import with --tasks naming your task modules, "
                "or start a worker that has it first"
            ) from None
        after = 0
        while True:
            async with self.client.db.connection() as conn, conn.transaction():
                params = {
                    "after": after,
                    "statuses": statuses,
                    "tasks": tasks,
                    "source": self.plan.source,
                    "limit": self.plan.batch_size,
                }
                await conn.execute(
                    self._queries["start_import_batch"],
                    {"source": self.plan.source, "search_path": self._search_path},
                )
                cursor = await conn.execute(self._compose("take_procrastinate_jobs"), params)
                jobs = [SourceJob(*row) for row in await cursor.fetchall()]
                if not jobs:
                    break
                await self._import_batch(conn, jobs, report)
            after = jobs[-1].id
            report.batches += 1
            if on_batch is not None:
                on_batch(report)
        report.left = await self._left(tasks, statuses)
        return report

    def refusal(self, report: ImportReport) -> str | None:
        """Why a run would refuse to start on what ``report`` found (None: it would not)."""
        # Failed jobs of unmapped tasks matter only when failed jobs are asked for.
        unmapped = [
            row
            for row in report.rows
            if row.action == "unmapped" and (row.status != FAILED or self.plan.include_failed)
        ]
        if unmapped and not self.plan.skip_unmapped:
            by_task: dict[str, int] = {}
            for row in unmapped:
                by_task[row.task] = by_task.get(row.task, 0) + row.found
            listed = ", ".join(f"{task!r} ({count})" for task, count in sorted(by_task.items()))
            return (
                f"{sum(by_task.values())} procrastinate jobs are of tasks the mapping file does not name: "
                f"{listed}; add them to its [tasks], or pass --skip-unmapped to leave them in procrastinate"
            )
        running = sum(row.found for row in report.rows if row.action == "running")
        if running:
            return (
                f"{running} procrastinate jobs are running (status doing): stop procrastinate's workers and "
                "import again once they have finished; or pass --include-doing to import them as waiting "
                "jobs (a job a procrastinate worker is still running may then run twice)"
            )
        return None

    def _refuse(self, report: ImportReport) -> None:
        why = self.refusal(report)
        if why is not None:
            raise ConveyorError(why)

    async def _check_source(self, conn: psycopg.AsyncConnection[Any]) -> None:
        schema = self.plan.source_schema
        cursor = await conn.execute(self._queries["procrastinate_tables"], {"source_schema": schema})
        row = await cursor.fetchone()
        assert row is not None
        has_jobs, has_events, columns = row
        if not has_jobs:
            raise ConveyorError(
                f"no procrastinate_jobs table in schema {schema!r} of this database: name the schema "
                "procrastinate uses with --from-schema (its tables live in its connection's search_path)"
            )
        missing = [column for column in JOB_COLUMNS if column not in columns]
        if missing or not has_events:
            what = f"column {missing[0]!r}" if missing else "table procrastinate_events"
            raise ConveyorError(
                f"schema {schema!r} does not hold procrastinate 3.x's tables ({what} is missing): "
                "upgrade procrastinate's schema first"
            )

    async def _import_batch(
        self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[SourceJob], report: ImportReport
    ) -> None:
        task_map = self.plan.task_map
        registry = await self.client.task_registry(
            sorted({t.task for j in jobs if (t := task_map.target(j.task)) is not None}), conn=conn
        )
        checked: list[tuple[SourceJob, JobRequest, PreparedJob]] = []
        for job in jobs:
            target = task_map.target(job.task)
            assert target is not None  # only mapped tasks are taken
            request = JobRequest(
                target.task,
                job.args if isinstance(job.args, dict) else {},
                queue=task_map.queue(target, job.queue),
                priority=task_map.priority(job.priority),
                run_at=job.scheduled_at if job.status != FAILED else None,
                unique_key=job.queueing_lock,
                key=job.lock,
                meta={
                    "procrastinate": {
                        "id": job.id,
                        "task": job.task,
                        "queue": job.queue,
                        "attempts": job.attempts,
                    }
                },
            )
            try:
                if not isinstance(job.args, dict):
                    raise ArgumentsError(f"arguments are not a JSON object: {json.dumps(job.args)[:80]}")
                if job.unusable_time is not None:
                    raise InvalidOptionError(
                        f"scheduled_at {job.unusable_time!r} is out of the range Conveyor takes (years 2 to 9998)"
                    )
                checked.append((job, request, prepare(registry, request)))
            except ConveyorError as exc:
                self._refused(report, job, str(exc))
        checked = await self._with_queues(conn, checked, report)
        live = [(job, request, prepared) for job, request, prepared in checked if job.status != FAILED]
        dead = [(job, prepared) for job, _, prepared in checked if job.status == FAILED]
        live_ids = (
            await self.client.enqueue_many([request for _, request, _ in live], conn=conn) if live else []
        )
        dead_ids = await self._bury(conn, dead) if dead else []
        imported = [job for job, *_ in live] + [job for job, _ in dead]
        if not imported:
            return
        await conn.execute(
            self._queries["record_imported_jobs"],
            {
                "source": self.plan.source,
                "source_ids": [job.id for job in imported],
                "source_statuses": [job.status for job in imported],
                "job_ids": [*live_ids, *dead_ids],
            },
        )
        if self.plan.source_rows != "keep":
            name = (
                "cancel_procrastinate_jobs"
                if self.plan.source_rows == "cancel"
                else "delete_procrastinate_jobs"
            )
            await conn.execute(self._compose(name), {"ids": [job.id for job in imported]})
        now = datetime.now(UTC)
        for job in imported:
            self._row(report, job).imported += 1
            if job.status == FAILED:
                report.dead += 1
            elif job.scheduled_at is not None and job.scheduled_at > now:
                report.scheduled += 1
            else:
                report.waiting += 1

    async def _with_queues(
        self,
        conn: psycopg.AsyncConnection[Any],
        checked: list[tuple[SourceJob, JobRequest, PreparedJob]],
        report: ImportReport,
    ) -> list[tuple[SourceJob, JobRequest, PreparedJob]]:
        """The jobs whose queues can take them (declared queues are created, as an enqueue
        creates them); the others are refused."""
        if not checked:
            return checked
        queues: dict[str, bool] = {}
        for _, _, prepared in checked:
            queues[prepared.queue] = queues.get(prepared.queue, False) or prepared.declared_queue
        cursor = await conn.execute(
            self._queries["ensure_queues"], {"names": list(queues), "declared": list(queues.values())}
        )
        usable = {row[0] for row in await cursor.fetchall()}
        kept = []
        for entry in checked:
            if entry[2].queue in usable:
                kept.append(entry)
            else:
                self._refused(report, entry[0], unknown_queue_message([entry[2].queue]))
        return kept

    async def _bury(
        self, conn: psycopg.AsyncConnection[Any], dead: Sequence[tuple[SourceJob, PreparedJob]]
    ) -> list[int]:
        """Failed source jobs into the dead-letter table; their new ids, in order."""
        now = self.client.clock.now()
        cursor = await conn.execute(
            self._queries["prepare_bulk"],
            {"now": now, "jobs_table": self._queries.jobs_table, "count": len(dead)},
        )
        row = await cursor.fetchone()
        assert row is not None
        clock_now: datetime = row[0]
        ids: list[int] = list(row[1])
        records = []
        for job_id, (job, prepared) in zip(ids, dead, strict=True):
            attempts = "1 attempt" if job.attempts == 1 else f"{job.attempts} attempts"
            records.append(
                {
                    "id": job_id,
                    "run_at": (job.scheduled_at or job.deferred_at or clock_now).isoformat(),
                    "enqueued_at": (job.deferred_at or clock_now).isoformat(),
                    "attempt": job.attempts,
                    "max_attempts": prepared.max_attempts,
                    "priority": prepared.priority,
                    "queue": prepared.queue,
                    "task": prepared.task,
                    "unique_key": prepared.unique_key,
                    "args": json.loads(prepared.args_json),
                    "error": {
                        "attempt": job.attempts,
                        "at": (job.failed_at or clock_now).isoformat(),
                        "counted": True,
                        "error": f"failed in procrastinate (job {job.id} of task {job.task!r}, after {attempts}); "
                        "procrastinate keeps no error message: its worker's log has it",
                    },
                    "key": prepared.key,
                    "meta": json.loads(prepared.meta_json) if prepared.meta_json else None,
                }
            )
        cursor = await conn.execute(self._queries["bury_imported_jobs"], {"now": now, "jobs": Jsonb(records)})
        buried = [row[0] for row in await cursor.fetchall()]
        assert sorted(buried) == sorted(ids)
        return ids

    def _row(self, report: ImportReport, job: SourceJob) -> TaskStatus:
        """The report's row for a job; a job deferred (or failed) after the preview may be
        the first of its task and status, which then gets a row of its own."""
        row = report.row(job.task, job.status)
        if row is None:
            target = self.plan.task_map.target(job.task)
            name = target.task if target is not None else None
            row = TaskStatus(job.task, job.status, name, self.plan.action(job.task, job.status), 0)
            report.rows.append(row)
        return row

    def _refused(self, report: ImportReport, job: SourceJob, why: str) -> None:
        report.refused[job.id] = why
        self._row(report, job).refused += 1

    async def _left(self, tasks: list[str], statuses: list[str]) -> int:
        async with self.client.db.connection() as conn:
            params = {"statuses": statuses, "source": self.plan.source}
            rows = await (await conn.execute(self._compose("count_procrastinate_jobs"), params)).fetchall()
        return sum(count for task, _, count in rows if task in tasks)


def check_plan(plan: ImportPlan) -> None:
    """Refuse options out of range (the CLI's choices already keep them in)."""
    if not plan.source_schema or "\x00" in plan.source_schema:
        raise ConveyorError(f"name the schema of procrastinate's tables, got {plan.source_schema!r}")
    if plan.source_rows not in SOURCE_ROWS:
        raise ConveyorError(f"source_rows must be one of {', '.join(SOURCE_ROWS)}, got {plan.source_rows!r}")
    if not 1 <= plan.batch_size <= 10_000:
        raise ConveyorError(f"batch_size must be 1 to 10000, got {plan.batch_size}")
