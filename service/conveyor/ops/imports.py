"""Importing jobs from another queue system, with the role each step needs.

Contract: looking at what an import would do (``preview_procrastinate``) needs a viewer;
importing needs an admin, since it writes jobs into any queue and may delete the source's
rows. The work is ``queue.imports``: batch by batch, each batch one transaction, nothing
imported twice (docs/coming-from-procrastinate.md).
"""

from __future__ import annotations

from collections.abc import Callable

from ..queue.client import Conveyor
from ..queue.imports import ImportPlan, ImportReport, ProcrastinateImport, check_plan
from .roles import Principal, Role, require


async def preview_procrastinate(client: Conveyor, principal: Principal, plan: ImportPlan) -> ImportReport:
    """The procrastinate jobs not imported yet, by task and status, and what an import would
    do with each group; writes nothing."""
    require(principal, Role.VIEWER, "previewing an import")
    check_plan(plan)
    return await ProcrastinateImport(client, plan).preview()


async def import_procrastinate(
    client: Conveyor,
    principal: Principal,
    plan: ImportPlan,
    *,
    on_batch: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import the procrastinate jobs ``plan`` selects; ``on_batch`` is called with the report
    so far after each committed batch. Refuses (ConveyorError, nothing written) what
    ``ProcrastinateImport.run`` refuses."""
    require(principal, Role.ADMIN, "importing jobs")
    check_plan(plan)
    return await ProcrastinateImport(client, plan).run(on_batch)
