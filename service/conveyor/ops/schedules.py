"""Operations on cron schedules, with the role each needs.

Contract: every function checks the role first, then delegates to the client. Reading needs
a viewer; pausing, resuming and triggering an operator; creating, changing and removing an
admin. A schedule is read with its next fire time in UTC and in its own time zone; a new or
redefined schedule whose next fire the scheduler has not computed yet shows the next fire
its cron gives from now (``next_fire_estimated``). Changing some fields of a schedule
(``Conveyor.update_schedule``) reads, merges and redefines it in one transaction with its
row locked: two changes take turns and each keeps the other's fields; the cadence goes on
unless the cron or the time zone changed. A schedule declared in code is written again
by the scheduler when it starts; change those in code. A schedule of the built-in task
that refreshes a materialized view (REFRESH_TASK) needs its ``view`` to be one: it is stored
as ``schema.name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..cron import Cron, check_timezone
from ..errors import ConveyorError, InvalidOptionError, NotFoundError
from ..queue.client import SCHEDULE_FIELDS, Conveyor
from ..queue.matviews import REFRESH_TASK
from ..tasks import named_schedule
from .roles import Principal, Role, require

# What a schedule's definition holds besides its name (the fields a change may set).
DEFINITION = SCHEDULE_FIELDS


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as stored, with its next fire in UTC and in its own zone."""

    row: dict[str, Any]
    next_fire_at: datetime | None  # UTC
    next_fire_local: datetime | None  # the same instant in the schedule's time zone
    next_fire_estimated: bool  # computed from its cron here: the scheduler has not yet


def view(row: dict[str, Any], *, now: datetime | None = None) -> ScheduleView:
    at: datetime | None = row["next_fire_at"]
    estimated = False
    if at is None and not row["paused"] and row["error"] is None:
        try:
            at = Cron(row["cron"], row["timezone"]).next_after(now or datetime.now(UTC))
            estimated = True
        except ConveyorError:
            at = None  # the scheduler will record why it cannot fire in the schedule's error
    if at is None:
        return ScheduleView(row, None, None, False)
    try:
        zone = ZoneInfo(row["timezone"])
    except (ValueError, KeyError):  # pragma: no cover - the database checks the zone
        zone = ZoneInfo("UTC")
    return ScheduleView(row, at.astimezone(UTC), at.astimezone(zone), estimated)


async def list_schedules(client: Conveyor, principal: Principal) -> list[ScheduleView]:
    require(principal, Role.VIEWER, "listing schedules")
    return [view(row) for row in await client.schedules()]


async def get_schedule(client: Conveyor, principal: Principal, name: str) -> ScheduleView:
    require(principal, Role.VIEWER, "reading a schedule")
    return view(await _row(client, name))


def _named(name: str) -> str:
    """A name that may be a schedule's (tasks.named_schedule)."""
    return named_schedule(name)


async def _row(client: Conveyor, name: str) -> dict[str, Any]:
    for row in await client.schedules():
        if row["name"] == name:
            return row
    raise NotFoundError(f"no schedule named {name!r}")


async def create_schedule(
    client: Conveyor,
    principal: Principal,
    name: str,
    definition: Mapping[str, Any],
    *,
    replace: bool = False,
) -> ScheduleView:
    """Create a schedule from ``definition`` (``cron`` and ``task`` required, the rest of
    DEFINITION optional); a name that is taken is a ConflictError, unless ``replace``
    (then the schedule is redefined whole)."""
    require(principal, Role.ADMIN, "redefining a schedule" if replace else "creating a schedule")
    await _define(client, name, definition, replace=replace)
    return view(await _row(client, name))


async def update_schedule(
    client: Conveyor, principal: Principal, name: str, changes: Mapping[str, Any]
) -> ScheduleView:
    """Change some fields of an existing schedule (the others are kept)."""
    require(principal, Role.ADMIN, "changing a schedule")
    unknown = set(changes) - set(DEFINITION)
    if unknown:
        raise InvalidOptionError(f"a schedule has no field {', '.join(sorted(unknown))}")
    changed = dict(changes)
    if isinstance(changed.get("args"), Mapping):
        task = changed.get("task") or (await _row(client, name))["task"]
        changed["args"] = await _checked_args(client, task, changed["args"])
    await client.update_schedule(_named(name), changed)
    return view(await _row(client, name))


async def _checked_args(client: Conveyor, task: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments, with a view-refresh schedule's view checked and named in full."""
    checked = dict(args)
    if task == REFRESH_TASK and isinstance(checked.get("view"), str):
        try:
            checked["view"] = await client.check_materialized_view(checked["view"])
        except ConveyorError as exc:  # not a materialized view
            raise InvalidOptionError(str(exc)) from None
    return checked


async def _define(client: Conveyor, name: str, definition: Mapping[str, Any], *, replace: bool) -> None:
    args = await _checked_args(client, definition["task"], definition.get("args") or {})
    await client.create_schedule(
        name,
        definition["cron"],
        definition["task"],
        args,
        timezone=definition.get("timezone") or "UTC",
        queue=definition.get("queue"),
        priority=definition.get("priority"),
        max_attempts=definition.get("max_attempts"),
        catch_up=definition.get("catch_up") or "once",
        replace=replace,
    )


async def pause_schedule(client: Conveyor, principal: Principal, name: str) -> None:
    require(principal, Role.OPERATOR, "pausing a schedule")
    await client.pause_schedule(_named(name))


async def resume_schedule(client: Conveyor, principal: Principal, name: str) -> None:
    require(principal, Role.OPERATOR, "resuming a schedule")
    await client.resume_schedule(_named(name))


async def trigger_schedule(client: Conveyor, principal: Principal, name: str) -> int:
    """Enqueue the schedule's job now, its cadence untouched; the job's id."""
    require(principal, Role.OPERATOR, "triggering a schedule")
    return await client.trigger_schedule(_named(name))


async def remove_schedule(client: Conveyor, principal: Principal, name: str) -> None:
    require(principal, Role.ADMIN, "removing a schedule")
    await client.remove_schedule(_named(name))


async def schedule_fires(
    client: Conveyor, principal: Principal, name: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """The schedule's latest fires, newest first; NotFoundError for an unknown schedule."""
    require(principal, Role.VIEWER, "reading a schedule's fires")
    await _row(client, name)
    return await client.schedule_fires(name, limit=limit)


def preview_fires(
    principal: Principal, cron: str, timezone: str, *, count: int = 5, after: datetime | None = None
) -> list[datetime]:
    """The next ``count`` fire times (UTC) of ``cron`` in ``timezone`` after ``after`` (now),
    as the scheduler computes them; InvalidOptionError names what is wrong with either. The
    time zone is checked first, then the expression."""
    require(principal, Role.VIEWER, "previewing a schedule")
    check_timezone(timezone)
    schedule = Cron(cron, timezone)
    fires: list[datetime] = []
    moment = after or datetime.now(UTC)
    for _ in range(max(0, min(count, 100))):
        moment = schedule.next_after(moment)
        fires.append(moment)
    return fires
