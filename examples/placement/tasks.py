"""The placement team's jobs and schedules (run by ``python -m examples.placement``, or by
``conveyor worker --tasks examples.placement.tasks`` and ``conveyor scheduler`` with the same).

- ``filter_eligible``: a drive's eligible students, enqueued in the transaction that
  publishes the drive (``examples.placement.app``). Written in chunks, so the drive's page
  fills as it runs.
- ``evaluate_students``: at 1 AM in Sydney, one ``evaluate_student`` job per student, in a
  batch; when the last has ended, the batch's callback ``summarize_evaluation`` e-mails the
  placement office a summary.
- Every hour, ``conveyor.refresh_materialized_view`` refreshes ``placement.department_stats``.
- The ``eligibility`` export: every drive's eligible students, as CSV.

Jobs are delivered at least once, so each writes what it found in a way that a second run
repeats rather than doubles (``ON CONFLICT``).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, any_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

import conveyor.contrib.email  # registers conveyor.email.send
from conveyor import Discard, JobContext, schedule, schedule_refresh, task
from conveyor.contrib.exports import register_export  # and conveyor.exports.export

from .db import DEPARTMENT_STATS, Drive, Eligibility, Evaluation, Student, sessions

SYDNEY = ZoneInfo("Australia/Sydney")
CHUNK = 10  # students written per transaction while filtering a drive
ELIGIBILITY_EXPORT = "eligibility"


def office_address() -> str:
    return os.environ.get("PLACEMENT_OFFICE_EMAIL", "placement-office@example.edu")


def meets_criteria() -> ColumnElement[bool]:
    """A student meets a drive's criteria (a join condition between the two tables)."""
    return and_(
        Student.cgpa >= Drive.min_cgpa,
        Student.tenth_percent >= Drive.min_tenth_percent,
        Student.twelfth_percent >= Drive.min_twelfth_percent,
        Student.backlogs <= Drive.max_backlogs,
        or_(func.cardinality(Drive.departments) == 0, Student.department == any_(Drive.departments)),
    )


@task(name="placement.filter_eligible", queue="eligibility", max_attempts=5)
async def filter_eligible(drive_id: int, ctx: JobContext) -> dict[str, Any]:
    """Record which students may apply to the drive."""
    async with sessions()() as session:
        if await session.get(Drive, drive_id) is None:  # cannot happen: the job commits with its drive
            raise Discard(f"no drive {drive_id}")
        found = await session.scalars(
            select(Student.id).join(Drive, meets_criteria()).where(Drive.id == drive_id).order_by(Student.id)
        )
        students = list(found)
    for start in range(0, len(students), CHUNK):
        chunk = students[start : start + CHUNK]
        async with sessions()() as session, session.begin():
            rows = [{"drive_id": drive_id, "student_id": student} for student in chunk]
            await session.execute(insert(Eligibility).values(rows).on_conflict_do_nothing())
        ctx.progress((start + len(chunk)) * 100 // len(students), f"{start + len(chunk)} eligible so far")
    async with sessions()() as session, session.begin():
        await session.execute(update(Drive).where(Drive.id == drive_id).values(filtered_at=datetime.now(UTC)))
    return {"drive_id": drive_id, "eligible": len(students)}


@task(name="placement.evaluate_students", queue="evaluations")
async def evaluate_students(ctx: JobContext) -> dict[str, Any]:
    """Fan out: one job per student, in a batch whose callback sends the summary. The batch
    and its jobs are written with this job's completion: all of them, or (if it fails) none."""
    day = datetime.now(SYDNEY).date().isoformat()
    async with sessions()() as session:
        students = list(await session.scalars(select(Student.id).order_by(Student.id)))
    batch = ctx.batch(summarize_evaluation, {"day": day})
    for student in students:
        batch.enqueue(evaluate_student, {"student_id": student, "day": day})
    return {"day": day, "students": len(students)}


@task(name="placement.evaluate_student", queue="evaluations", max_attempts=3)
async def evaluate_student(student_id: int, day: str) -> dict[str, Any]:
    """How many drives the student may apply to, recorded for the day."""
    async with sessions()() as session, session.begin():
        drives = await session.scalar(
            select(func.count())
            .select_from(Drive)
            .join(Student, meets_criteria())
            .where(Student.id == student_id)
        )
        row = {"student_id": student_id, "day": date.fromisoformat(day), "eligible_drives": drives or 0}
        upsert = insert(Evaluation).values(row)
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=[Evaluation.student_id, Evaluation.day],
                set_={"eligible_drives": upsert.excluded.eligible_drives},
            )
        )
    return {"student_id": student_id, "eligible_drives": drives or 0}


@task(name="placement.summarize_evaluation", queue="evaluations")
async def summarize_evaluation(day: str, batch: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The batch's callback: runs once, after every student's job ended (whatever the outcome)."""
    async with sessions()() as session:
        evaluated, with_drives = (
            await session.execute(
                select(func.count(), func.count().filter(Evaluation.eligible_drives > 0)).where(
                    Evaluation.day == date.fromisoformat(day)
                )
            )
        ).one()
    lines = [
        f"Nightly evaluation of {day}",
        f"{evaluated} students evaluated, {with_drives} eligible for at least one drive.",
        f"Jobs: {batch['completed']} completed, {batch['dead']} failed, of {batch['total']}.",
    ]
    subject = f"Nightly evaluation {day}: {with_drives} of {evaluated} students eligible"
    ctx.enqueue(
        conveyor.contrib.email.SEND_TASK,
        {"to": [office_address()], "subject": subject, "text": "\n".join(lines) + "\n"},
    )
    return {"day": day, "evaluated": evaluated, "eligible": with_drives}


schedule("nightly-evaluation", "0 1 * * *", evaluate_students, timezone="Australia/Sydney")
schedule_refresh(DEPARTMENT_STATS, "0 * * * *", name="hourly-department-stats")

register_export(
    ELIGIBILITY_EXPORT,
    """SELECT d.id AS drive_id, d.company, d.role, s.roll_no, s.name, s.department, s.cgpa
    FROM placement.eligibility e
    JOIN placement.drives d ON d.id = e.drive_id
    JOIN placement.students s ON s.id = e.student_id
    ORDER BY d.id, s.roll_no""",
)
