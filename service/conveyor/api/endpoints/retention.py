"""Retention: how long finished work is kept; show, set, apply now."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ...errors import UnknownQueueError
from ...ops import retention as ops
from ...ops.roles import Role
from ..fields import NAME_PATTERN, Count, DurationIn, Seconds
from ..routing import Call, Group, Input, Output, Params

group = Group("retention", "How long finished jobs, dead jobs and the run log are kept.")


class RetentionOut(Output):
    """What a queue keeps (queue ``*``: the defaults)."""

    queue: str
    completed_keep: Seconds | None = Field(description="Finished jobs are kept this long.")
    completed_max: int | None = Field(description="At most this many finished jobs per queue.")
    dead_keep: Seconds | None = Field(description="Dead jobs are kept this long.")
    runs_keep: Seconds | None = Field(description="The run log is kept this long.")


class RetentionList(Output):
    """The defaults (queue ``*``) first, then what each queue keeps."""

    retention: list[RetentionOut]


@group.route("GET", "/retention", role=Role.VIEWER, summary="Show retention")
async def show_retention(call: Call) -> RetentionList:
    rows = await ops.show(call.client, call.principal)
    return RetentionList(retention=[RetentionOut.model_validate(row) for row in rows])


class RetentionPath(Params):
    queue: Annotated[
        str, Field(pattern=f"(^\\*$)|({NAME_PATTERN})", description="A queue, or * for the defaults.")
    ]


class RetentionIn(Input):
    """The values to change; those left out keep theirs."""

    completed_keep: DurationIn | None = None
    completed_max: Count | None = None
    dead_keep: DurationIn | None = None
    runs_keep: DurationIn | None = None


@group.route(
    "PUT", "/retention/{queue}", role=Role.ADMIN, summary="Set retention", missing=(UnknownQueueError,)
)
async def set_retention(call: Call, path: RetentionPath, body: RetentionIn) -> RetentionOut:
    row = await ops.set_retention(
        call.client,
        call.principal,
        path.queue,
        completed_keep=body.completed_keep,
        completed_max=body.completed_max,
        dead_keep=body.dead_keep,
        runs_keep=body.runs_keep,
    )
    return RetentionOut.model_validate(row)


class ApplyIn(Input):
    budget: float = Field(
        default=10.0, gt=0, le=ops.MAX_APPLY_BUDGET, description="Seconds to spend at most."
    )


class Applied(Output):
    """What each step removed; a run that ran out of budget resumes next time."""

    steps: dict[str, int]


@group.route("POST", "/retention/apply", role=Role.ADMIN, summary="Apply retention now", body_optional=True)
async def apply_retention(call: Call, body: ApplyIn) -> Applied:
    """Cleans finished jobs, dead jobs and the run log past what retention keeps, within the
    time budget (the elected scheduler does this every 10 minutes)."""
    return Applied(steps=await ops.apply(call.client, call.principal, budget=body.budget))
