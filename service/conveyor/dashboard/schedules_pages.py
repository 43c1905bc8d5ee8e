"""The dashboard's Schedules section: every schedule, one schedule with its recent fires (a
fragment htmx polls), creating one, changing it, pausing, resuming, triggering it now and
removing it (with a confirmation the server requires).

Everything goes through ``conveyor.ops.schedules`` as the session's principal, which checks
the role: reading needs a viewer; pausing, resuming and triggering an operator; creating,
changing and removing an admin. A form the service layer refuses (a cron expression, a
time zone, arguments, a task) is shown again as typed, with the message next to its field
(422). The next five fires of a cron expression are previewed before saving (the form's
Preview button), and shown on a schedule's page.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..api.auth import Authenticator
from ..errors import ConveyorError, ForbiddenError, InvalidOptionError, NotFoundError
from ..ops import jobs as job_ops
from ..ops import schedules as ops
from ..ops.roles import Principal, Role, require
from ..queue.client import Conveyor
from .base import DashboardBase, Form, GetClient, Session
from .jobs_view import redact
from .render import link
from .schedule_forms import CATCH_UP, PRIORITIES, ScheduleForm, iso, place, time_zones, utc, zoned

MISSING = (NotFoundError,)
FIRES_SHOWN = 20
KINDS = {
    "on_time": "on time",
    "late": "late",
    "catch_up": "catch-up",
    "skipped": "skipped",
    "manual": "manual (run now)",
}


def schedule_routes(
    get_client: GetClient, authenticator: Authenticator, *, redact: frozenset[str] = frozenset()
) -> list[BaseRoute]:
    """The section's routes. The new-schedule form is at ``/dashboard/new-schedule``, outside
    ``/dashboard/schedules/{name}``, so every schedule name (``new`` too) has its page.
    ``redact``: the argument names hidden on a schedule's page, as on a job's (the change
    form, shown to admins only, holds the real values: it must, to keep them)."""
    pages = SchedulePages(get_client, authenticator)
    pages.redact = redact
    base = "/dashboard/schedules"
    return [
        Route(base, pages.list_page, methods=["GET"], name="dashboard_schedules"),
        Route("/dashboard/new-schedule", pages.new_form, methods=["GET"], name="dashboard_schedule_new"),
        Route("/dashboard/new-schedule", pages.create, methods=["POST"], name="dashboard_schedule_create"),
        Route(f"{base}/{{name}}", pages.detail, methods=["GET"], name="dashboard_schedule"),
        Route(
            f"{base}/{{name}}/fires", pages.fires_fragment, methods=["GET"], name="dashboard_schedule_fires"
        ),
        Route(f"{base}/{{name}}/edit", pages.edit, methods=["POST"], name="dashboard_schedule_edit"),
        Route(f"{base}/{{name}}/pause", pages.pause, methods=["POST"], name="dashboard_schedule_pause"),
        Route(f"{base}/{{name}}/resume", pages.resume, methods=["POST"], name="dashboard_schedule_resume"),
        Route(f"{base}/{{name}}/trigger", pages.trigger, methods=["POST"], name="dashboard_schedule_trigger"),
        Route(f"{base}/{{name}}/remove", pages.remove, methods=["POST"], name="dashboard_schedule_remove"),
    ]


class SchedulePages(DashboardBase):
    redact: frozenset[str] = frozenset()

    def page(self, request: Request, found: Session, template: str, **context: Any) -> Response:
        """A page of this section, with the helpers its templates use."""
        return self.render(
            request,
            found,
            template,
            section="schedules",
            can_admin=found.principal.role >= Role.ADMIN,
            zoned=zoned,
            utc=utc,
            iso=iso,
            kinds=KINDS,
            priorities=PRIORITIES,
            catch_up_policies=CATCH_UP,
            **context,
        )

    # -- reading ---------------------------------------------------------------------

    async def list_page(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        try:
            views = await ops.list_schedules(await self.get_client(), found.principal)
        except ConveyorError as exc:
            return self.failed(request, found, exc)
        return self.page(request, found, "schedules.html", schedules=views)

    async def detail(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        return await self._detail(request, found, request.path_params["name"])

    async def _detail(
        self,
        request: Request,
        found: Session,
        name: str,
        *,
        form: ScheduleForm | None = None,
        form_preview: list[datetime] | None = None,
        status_code: int = 200,
    ) -> Response:
        client = await self.get_client()
        try:
            schedule = await ops.get_schedule(client, found.principal, name)
            fires = await _fires(client, found.principal, name)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=MISSING)
        row = schedule.row
        form = form or ScheduleForm.of_row(row)
        try:
            upcoming = ops.preview_fires(found.principal, row["cron"], row["timezone"])
        except ConveyorError:
            upcoming = []  # the scheduler records why it cannot fire in the schedule's error
        return self.page(
            request,
            found,
            "schedule.html",
            schedule=schedule,
            shown_args=redact(row["args"], self.redact),
            zone=ZoneInfo(row["timezone"]),
            fires=fires,
            upcoming=upcoming,
            form=form,
            form_preview=form_preview,
            preview_zone=_zone_or_none(form.timezone),
            zones=time_zones(),
            status_code=status_code,
        )

    async def fires_fragment(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        name = request.path_params["name"]
        client = await self.get_client()
        try:
            schedule = await ops.get_schedule(client, found.principal, name)
            fires = await _fires(client, found.principal, name)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=MISSING)
        return self.page(
            request,
            found,
            "_schedule_fires.html",
            schedule=schedule,
            zone=ZoneInfo(schedule.row["timezone"]),
            fires=fires,
        )

    # -- creating and changing ---------------------------------------------------------

    async def new_form(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        try:
            require(found.principal, Role.ADMIN, "creating a schedule")
        except ForbiddenError as exc:
            return self.failed(request, found, exc)
        return self._form_page(request, found, ScheduleForm())

    def _form_page(
        self,
        request: Request,
        found: Session,
        form: ScheduleForm,
        *,
        preview: list[datetime] | None = None,
        status_code: int = 200,
    ) -> Response:
        return self.page(
            request,
            found,
            "schedule_form.html",
            form=form,
            form_preview=preview,
            preview_zone=_zone_or_none(form.timezone),
            zones=time_zones(),
            status_code=status_code,
        )

    async def create(self, request: Request) -> Response:
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        found, posted = checked
        try:
            require(found.principal, Role.ADMIN, "creating a schedule")
        except ForbiddenError as exc:
            return self.failed(request, found, exc)
        form = ScheduleForm.of(posted)
        definition, form, preview = _checked(found.principal, form)
        if form.errors:
            return self._form_page(request, found, form, status_code=422)
        if "preview" in posted:
            return self._form_page(request, found, form, preview=preview)
        try:
            await ops.create_schedule(await self.get_client(), found.principal, form.name, definition)
        except ForbiddenError as exc:
            return self.failed(request, found, exc)
        except ConveyorError as exc:
            refused = form.refused({place(exc): str(exc)})
            return self._form_page(request, found, refused, status_code=422)
        return self.redirect(
            request, link(request, "dashboard_schedule", name=form.name), f"Schedule {form.name} created."
        )

    async def edit(self, request: Request) -> Response:
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        found, posted = checked
        name = request.path_params["name"]
        try:
            require(found.principal, Role.ADMIN, "changing a schedule")
        except ForbiddenError as exc:
            return self.failed(request, found, exc)
        form = replace(ScheduleForm.of(posted), name=name)
        definition, form, preview = _checked(found.principal, form)
        if form.errors:
            return await self._detail(request, found, name, form=form, status_code=422)
        if "preview" in posted:
            return await self._detail(request, found, name, form=form, form_preview=preview)
        try:
            await ops.update_schedule(await self.get_client(), found.principal, name, definition)
        except ForbiddenError as exc:
            return self.failed(request, found, exc)
        except NotFoundError as exc:
            return self.failed(request, found, exc, missing=MISSING)
        except ConveyorError as exc:
            refused = form.refused({place(exc): str(exc)})
            return await self._detail(request, found, name, form=refused, status_code=422)
        return self.redirect(
            request, link(request, "dashboard_schedule", name=name), f"Schedule {name} changed."
        )

    # -- actions ---------------------------------------------------------------------

    async def pause(self, request: Request) -> Response:
        name = request.path_params["name"]

        async def pause(client: Conveyor, principal: Principal, _: Form) -> str:
            await ops.pause_schedule(client, principal, name)
            return f"Schedule {name} paused."

        return await self.act(request, pause, _back(request, name), missing=MISSING)

    async def resume(self, request: Request) -> Response:
        name = request.path_params["name"]

        async def resume(client: Conveyor, principal: Principal, _: Form) -> str:
            await ops.resume_schedule(client, principal, name)
            return f"Schedule {name} resumed."

        return await self.act(request, resume, _back(request, name), missing=MISSING)

    async def trigger(self, request: Request) -> Response:
        name = request.path_params["name"]

        async def trigger(client: Conveyor, principal: Principal, _: Form) -> str:
            job_id = await ops.trigger_schedule(client, principal, name)
            return f"Schedule {name} triggered: job {job_id} enqueued."

        return await self.act(request, trigger, _back(request, name), missing=MISSING)

    async def remove(self, request: Request) -> Response:
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        found, posted = checked
        name = request.path_params["name"]
        if posted.get("confirm") != "yes":
            return self.render(
                request,
                found,
                "error.html",
                message=f"Removing schedule {name} needs its confirmation: tick the box, then remove.",
                status_code=400,
            )
        try:
            await ops.remove_schedule(await self.get_client(), found.principal, name)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=MISSING)
        return self.redirect(request, link(request, "dashboard_schedules"), f"Schedule {name} removed.")


def _checked(principal: Principal, form: ScheduleForm) -> tuple[dict[str, Any], ScheduleForm, list[datetime]]:
    """The form's definition, the form with what is wrong with it so far, and the next five
    fires of its cron in its zone (when both are right). The cron and the zone are checked
    by the service layer, each on its own so that both are named when both are wrong."""
    definition, errors = form.definition()
    preview: list[datetime] = []
    try:
        preview = ops.preview_fires(principal, form.cron, form.timezone)
    except InvalidOptionError as exc:
        errors[place(exc)] = str(exc)
        if place(exc) == "timezone":
            try:
                ops.preview_fires(principal, form.cron, "UTC")
            except InvalidOptionError as cron_exc:
                errors[place(cron_exc)] = str(cron_exc)
    return definition, form.refused(errors), preview


async def _fires(client: Conveyor, principal: Principal, name: str) -> list[dict[str, Any]]:
    """The schedule's latest fires, newest first, each with its job's state now (``outcome``;
    None when the fire enqueued no job or the job is gone)."""
    fires = []
    for row in await ops.schedule_fires(client, principal, name, limit=FIRES_SHOWN):
        outcome = None
        if row["job_id"] is not None:
            try:
                outcome = (await job_ops.get_job(client, principal, row["job_id"]))["state"]
            except NotFoundError:
                outcome = "gone"
        fires.append({**row, "outcome": outcome})
    return fires


def _back(request: Request, name: str) -> str:
    """After an action: the list if it was done there (``?back=list``), else the schedule."""
    if request.query_params.get("back") == "list":
        return link(request, "dashboard_schedules")
    return link(request, "dashboard_schedule", name=name)


def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name in time_zones() else None
    except (ValueError, KeyError):
        return None
