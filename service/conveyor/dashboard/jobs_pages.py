"""The dashboard's Jobs section: the list of jobs with its filters, one job's detail (its live
progress a fragment htmx polls), and the actions on one job. Everything goes through the
service layer (``conveyor.ops.jobs``), which checks the session's role.

Contract:

- ``GET /dashboard/jobs``: ``ops.jobs.search_jobs`` with the filters of the query string
  (``jobs_view.list_query``), a page at a time by its cursor. A filter that cannot be one is
  the page with the message, 422 (an unknown queue: 404); never a 500.
- ``GET /dashboard/jobs/{id}``: ``ops.jobs.get_job``; the fields named by the redaction
  setting are replaced in its arguments, result and meta; 404 for an unknown id.
- ``GET /dashboard/jobs/{id}/live?state=S``: the live part of the detail (state and progress),
  polled every second while the job runs (every 3 s while it waits). When the job's state is
  no longer ``S`` (the state the page shows), or the job is gone, it answers
  ``HX-Refresh: true``, so the whole page is read again (its actions, result and timeline).
- ``POST /dashboard/jobs/{id}/{action}``: run-now, cancel, abort, retry, delete (CSRF-checked,
  role-checked by ops). Delete is refused unless the form carries ``confirm=yes`` (the page
  at ``GET /dashboard/jobs/{id}/delete`` asks for it). After an action: back to the detail
  (the list after a delete) with a notice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ..api.auth import Authenticator
from ..errors import ConveyorError, InvalidOptionError, NotFoundError, UnknownQueueError
from ..ops import jobs as job_ops
from ..ops import queues as queue_ops
from ..ops.roles import Principal, Role
from ..queue.client import Conveyor
from ..queue.filters import JOB_STATES
from . import jobs_view as view
from .base import DashboardBase, Form, GetClient, Session
from .render import link

JOB_MISSING = (NotFoundError,)
MAX_JOB_ID = 2**63 - 1


class JobsPages(DashboardBase):
    def __init__(
        self, get_client: GetClient, authenticator: Authenticator, *, redact: frozenset[str]
    ) -> None:
        super().__init__(get_client, authenticator)
        self.redact = redact

    # -- the list -----------------------------------------------------------------------

    async def jobs(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        client = await self.get_client()
        queues = await queue_ops.queue_names(client, found.principal)
        context: dict[str, Any] = {"queues": queues, "states": JOB_STATES, "section": "jobs", "page": None}
        try:
            query = view.list_query(request.query_params)
        except InvalidOptionError as exc:
            values = {name: request.query_params.get(name, "") for name in view.FILTER_FIELDS}
            return self._list_error(request, found, exc, view.ListQuery(values=values), context)
        context["query"] = query
        try:
            page = await job_ops.search_jobs(
                client, found.principal, **query.filters, limit=query.limit, cursor=query.cursor
            )
        except ConveyorError as exc:
            return self._list_error(request, found, exc, query, context)
        base = link(request, "dashboard_jobs")
        next_link = None
        if page.next_cursor is not None:
            next_link = base + "?" + urlencode(query.link_params(cursor=page.next_cursor))
        first = query.link_params()
        return self.render(
            request,
            found,
            "jobs.html",
            **{
                **context,
                "page": page,
                "next_link": next_link,
                "first_link": (base + "?" + urlencode(first)) if first else base,
                "paged": query.cursor is not None,
                "now": datetime.now(UTC),
                "view": view,
            },
        )

    def _list_error(
        self,
        request: Request,
        found: Session,
        exc: ConveyorError,
        query: view.ListQuery,
        context: dict[str, Any],
    ) -> Response:
        status = 404 if isinstance(exc, UnknownQueueError) else 422
        return self.render(
            request,
            found,
            "jobs.html",
            **{**context, "query": query, "error": str(exc), "view": view, "now": datetime.now(UTC)},
            status_code=status,
        )

    # -- one job ------------------------------------------------------------------------

    async def job(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        job = await self._read_job(request, found)
        if isinstance(job, Response):
            return job
        return self.render(request, found, "job.html", **self._job_context(job, found), section="jobs")

    async def job_live(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        shown = request.query_params.get("state")
        job_id: int = request.path_params["job_id"]
        job: dict[str, Any] | None = None  # gone (deleted meanwhile): the page, read again, says so
        if 1 <= job_id <= MAX_JOB_ID:
            try:
                job = await job_ops.get_job(await self.get_client(), found.principal, job_id)
            except NotFoundError:
                pass
            except ConveyorError as exc:
                return self.failed(request, found, exc, missing=JOB_MISSING)
        if job is None or (shown is not None and shown != job["state"]):
            # The page shows another state: read it again whole (actions, result, timeline).
            return Response(status_code=200, headers={"HX-Refresh": "true", "Cache-Control": "no-store"})
        return self.render(request, found, "_job_live.html", **self._job_context(job, found))

    async def _read_job(self, request: Request, found: Session) -> dict[str, Any] | Response:
        """The job the path names, or its 404 page (an id no job can have is not asked for)."""
        job_id: int = request.path_params["job_id"]
        if not 1 <= job_id <= MAX_JOB_ID:
            return self.not_found(request, found, f"no job with id {job_id}")
        try:
            return await job_ops.get_job(await self.get_client(), found.principal, job_id)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=JOB_MISSING)

    def _job_context(self, job: dict[str, Any], found: Session) -> dict[str, Any]:
        return {
            "job": job,
            "args": view.pretty(view.redact(job.get("args") or {}, self.redact)),
            "result": None
            if job.get("result") is None
            else view.pretty(view.redact(job["result"], self.redact)),
            "meta": None if not job.get("meta") else view.pretty(view.redact(job["meta"], self.redact)),
            "errors": job.get("errors") or [],
            "actions": view.actions_for(job, found.principal.role),
            "live": view.is_live(job["state"]),
            "view": view,
            "now": datetime.now(UTC),
        }

    async def confirm_delete(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        job = await self._read_job(request, found)
        if isinstance(job, Response):
            return job
        if found.principal.role < Role.ADMIN:
            return self.refused(request, found, "Deleting a job needs the admin role.")
        if "delete" not in view.actions_for(job, found.principal.role):
            message = f"Job {job['id']} cannot be deleted: it is {job['state']} (cancel or abort it instead)."
            return self.render(request, found, "error.html", message=message, status_code=409)
        return self.render(request, found, "job_delete.html", job=job, view=view, section="jobs")

    # -- actions ------------------------------------------------------------------------

    async def job_action(self, request: Request) -> Response:
        job_id: int = request.path_params["job_id"]
        name: str = request.path_params["action"]
        detail = link(request, "dashboard_job", job_id=job_id)

        async def run_now(client: Conveyor, principal: Principal, _: Form) -> str:
            await job_ops.run_now(client, principal, job_id)
            return f"Job {job_id} is due now."

        async def cancel(client: Conveyor, principal: Principal, _: Form) -> str:
            state = await job_ops.cancel(client, principal, job_id)
            return f"Job {job_id}: {'abort asked' if state == 'aborting' else 'cancelled'}."

        async def abort(client: Conveyor, principal: Principal, _: Form) -> str:
            state = await job_ops.abort(client, principal, job_id)
            return f"Job {job_id}: {'abort asked' if state == 'aborting' else 'cancelled'}."

        async def retry(client: Conveyor, principal: Principal, _: Form) -> str:
            await job_ops.retry_job(client, principal, job_id)
            return f"Job {job_id} put back to run again."

        async def delete(client: Conveyor, principal: Principal, form: Form) -> str:
            if form.get("confirm") != "yes":
                raise InvalidOptionError(
                    f"Job {job_id} was not deleted: deleting needs its confirmation (the confirm field)."
                )
            await job_ops.delete_job(client, principal, job_id)
            return f"Job {job_id} deleted."

        actions = {"run-now": run_now, "cancel": cancel, "abort": abort, "retry": retry, "delete": delete}
        if name not in actions:
            checked = await self.checked_post(request)
            if isinstance(checked, Response):
                return checked
            return self.not_found(request, checked[0], f"There is no job action {name!r}.")
        back = link(request, "dashboard_jobs") if name == "delete" else detail
        return await self.act(request, actions[name], back, missing=JOB_MISSING)
