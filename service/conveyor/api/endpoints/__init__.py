"""The endpoints of the JSON API, one module per group; GROUPS is the route table."""

from __future__ import annotations

from ..routing import Group
from . import dead_jobs, exports, jobs, queues, retention, schedules, status

GROUPS: tuple[Group, ...] = (
    queues.group,
    jobs.group,
    dead_jobs.group,
    schedules.group,
    retention.group,
    status.group,
    exports.group,
)
