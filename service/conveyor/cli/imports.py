"""`conveyor import procrastinate`: move procrastinate's waiting (and failed) jobs into
Conveyor, through conveyor.ops as the local admin (docs/coming-from-procrastinate.md)."""

from __future__ import annotations

from pathlib import Path

import click

from ..ops import imports as ops
from ..ops.roles import LOCAL_ADMIN
from ..queue.imports import SOURCE_ROWS, ImportPlan, ImportReport
from ..task_map import TaskMapError, parse_task_map
from .common import Context, echo_json, fail, handle_errors, load_tasks, run_coroutine, table, with_client

# What the text report says of each group of jobs.
_ACTIONS = {
    "import": "imported",
    "dead-letter": "imported, dead",
    "unmapped": "skipped: task not in the map",
    "running": "refused: running (--include-doing)",
    "failed": "skipped: failed (--include-failed)",
}


@click.group("import")
def import_group() -> None:
    """Import jobs from another queue system in the same database."""


@import_group.command("procrastinate")
@click.option(
    "--map",
    "map_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML or JSON file mapping procrastinate task names to Conveyor tasks.",
)
@click.option(
    "--from-schema", default="public", show_default=True, help="The schema of procrastinate's tables."
)
@click.option("--include-failed", is_flag=True, help="Import failed jobs too, into the dead-letter table.")
@click.option("--include-doing", is_flag=True, help="Import running (doing) jobs too, as waiting jobs.")
@click.option(
    "--skip-unmapped", is_flag=True, help="Leave jobs of tasks the map does not name in procrastinate."
)
@click.option(
    "--source-rows",
    type=click.Choice(SOURCE_ROWS),
    default="cancel",
    show_default=True,
    help="What becomes of an imported procrastinate row: cancelled (procrastinate never runs it), deleted, or kept.",
)
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=500, show_default=True)
@click.option(
    "--dry-run", is_flag=True, help="Print what there is to import, by task and status; write nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--tasks", "tasks_modules", envvar="CONVEYOR_TASKS", default="tasks", show_default=True)
@click.pass_obj
@handle_errors
def procrastinate(
    ctx: Context,
    map_path: Path,
    from_schema: str,
    include_failed: bool,
    include_doing: bool,
    skip_unmapped: bool,
    source_rows: str,
    batch_size: int,
    dry_run: bool,
    as_json: bool,
    tasks_modules: str,
) -> None:
    """Move procrastinate's waiting and scheduled jobs (and, with --include-failed, its failed
    ones) into Conveyor, batch by batch; safe to run again: no job is imported twice."""
    try:
        text = map_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the mapping file {map_path}: {exc}")
    try:
        task_map = parse_task_map(text, name=map_path.name)
    except TaskMapError as exc:
        fail(str(exc))
    load_tasks(tasks_modules)
    plan = ImportPlan(
        from_schema,
        task_map,
        include_failed=include_failed,
        include_doing=include_doing,
        skip_unmapped=skip_unmapped,
        source_rows=source_rows,
        batch_size=batch_size,
    )

    def progress(report: ImportReport) -> None:
        if not as_json:
            click.echo(f"batch {report.batches}: {report.imported} imported so far", err=True)

    if dry_run:
        report = run_coroutine(with_client(ctx, lambda c: ops.preview_procrastinate(c, LOCAL_ADMIN, plan)))
    else:
        report = run_coroutine(
            with_client(ctx, lambda c: ops.import_procrastinate(c, LOCAL_ADMIN, plan, on_batch=progress))
        )
    if as_json:
        echo_json(_as_dict(report))
    else:
        _echo(report, plan)
    if report.refused:
        fail(f"{len(report.refused)} jobs were refused (see above); they stay in procrastinate as they were")


def _as_dict(report: ImportReport) -> dict[str, object]:
    return {
        "source": report.source,
        "dry_run": report.dry_run,
        "imported": report.imported,
        "waiting": report.waiting,
        "scheduled": report.scheduled,
        "dead": report.dead,
        "skipped": report.skipped,
        "refused": {str(job_id): why for job_id, why in report.refused.items()},
        "imported_before": report.imported_before,
        "left": report.left,
        "refusal": report.refusal,
        "batches": report.batches,
        "tasks": [
            {
                "task": row.task,
                "status": row.status,
                "conveyor_task": row.target,
                "action": row.action,
                "found": row.found,
                "imported": row.imported,
                "refused": row.refused,
            }
            for row in report.rows
        ],
    }


def _echo(report: ImportReport, plan: ImportPlan) -> None:
    verb = "would be" if report.dry_run else "was"
    rows = [
        [
            row.task,
            row.status,
            row.target,
            row.found,
            row.imported if not report.dry_run else "-",
            row.refused if not report.dry_run else "-",
            _ACTIONS[row.action].replace("imported", f"{verb} imported")
            if report.dry_run
            else _ACTIONS[row.action],
        ]
        for row in report.rows
    ]
    headers = ["task", "status", "conveyor_task", "found", "imported", "refused", "what"]
    click.echo(f"from {report.source} ({report.imported_before} jobs imported by earlier runs)")
    click.echo(table(rows, headers) if rows else "no procrastinate job left to import")
    for job_id, why in sorted(report.refused.items()):
        click.echo(f"refused: procrastinate job {job_id}: {why}")
    if report.dry_run:
        if report.refusal is not None:
            click.echo(f"an import now would be refused: {report.refusal}")
        return
    click.echo(
        f"imported {report.imported}: {report.waiting} waiting, {report.scheduled} scheduled, "
        f"{report.dead} dead; skipped {report.skipped}; refused {len(report.refused)}; "
        f"source rows {dict(cancel='cancelled', delete='deleted', keep='kept')[plan.source_rows]}"
    )
    if report.left:
        click.echo(
            f"{report.left} jobs are still there to import (the refused, and any a procrastinate worker "
            "held or deferred meanwhile): run again once fixed"
        )
