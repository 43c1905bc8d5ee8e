"""The queue page (``/dashboard/queues/{queue}``) and the throughput chart's fragment.

The page: the queue's counts and state with pause and resume (a fragment htmx polls), its
limits with a form to set or clear them, its paused tasks, the newest jobs in each state
(a short table each, linking to the jobs list filtered to the queue and state), and its
throughput over the last hour. Everything is read through the service layer
(``ops.queues.get_queue``, ``queue_limits``, ``throughput``; ``ops.jobs.search_jobs``, keyset
paged, one short page per state), which checks the asker's role; setting limits goes
through ``ops.queues.set_queue_limits`` (admin). An unknown queue (or a name no queue could
have) is a 404 page. A limits form that does not parse is shown again with its message
(422), nothing changed; clearing every limit needs its ``confirm`` box ticked (the server
refuses it without).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ..errors import ConveyorError, InvalidOptionError, UnknownQueueError
from ..limits import QueueLimits, check_cap, parse_rate
from ..ops import jobs as job_ops
from ..ops import queues as queue_ops
from ..ops.roles import Principal, Role
from ..queue.client import Conveyor
from ..queue.overview import QueueOverview
from ..queue.throughput import Throughput
from ..tasks import check_queue_name
from .base import DashboardBase, Form, Session
from .render import link, maybe_link
from .throughput_chart import chart_svg

QUEUE_MISSING = (UnknownQueueError, InvalidOptionError)
SHORT = 10  # jobs shown per state

# (state filter, heading, the overview's count for "all N")
STATES: tuple[tuple[str, str], ...] = (
    ("available", "Waiting"),
    ("scheduled", "Scheduled"),
    ("running", "Running"),
    ("completed", "Completed"),
    ("dead", "Dead (failed)"),
)
LIMIT_FIELDS = ("rate", "concurrency", "key_rate", "key_concurrency")


@dataclass(frozen=True)
class StateJobs:
    state: str
    heading: str
    jobs: list[dict[str, Any]]
    total: int | None  # None: not known (completed: the history's count is not read)
    more: bool  # another page exists
    list_url: str | None  # the jobs list filtered to the queue and state, if this app has one


def throughput_context(request: Request, data: Throughput) -> dict[str, Any]:
    """What ``_throughput.html`` needs: the data, its chart and the fragment's address."""
    scope = "all queues" if data.queue is None else f"queue {data.queue}"
    url = link(request, "dashboard_throughput")
    if data.queue is not None:
        url += "?" + urlencode({"queue": data.queue})
    return {
        "throughput": data,
        "throughput_chart": chart_svg(data, ident="tp", scope=scope),
        "throughput_url": url,
    }


def parse_limits(form: Form) -> QueueLimits:
    """The limits form's fields (each empty: no such limit); InvalidOptionError if one does not
    parse, or if none is given (clearing is its own button)."""
    rate, key_rate = form.text("rate"), form.text("key_rate")
    caps: dict[str, int | None] = {}
    for name in ("concurrency", "key_concurrency"):
        value = form.text(name)
        if not value:
            caps[name] = None
            continue
        if not (value.isascii() and value.isdigit()):
            raise InvalidOptionError(f"{name} must be a whole number (got {value[:20]!r})")
        # int() refuses over 4,300 digits; any 19 digits are over the cap already.
        caps[name] = check_cap(name, int(value) if len(value) <= 18 else 10**18)
    limits = QueueLimits(
        rate=parse_rate(rate) if rate else None,
        concurrency=caps["concurrency"],
        key_rate=parse_rate(key_rate) if key_rate else None,
        key_concurrency=caps["key_concurrency"],
    )
    if not limits.limited:
        raise InvalidOptionError("give at least one limit (or clear them all with Clear limits)")
    return limits


def limit_values(limits: QueueLimits | None) -> dict[str, str]:
    """The form's fields for limits in force (empty strings for none)."""
    if limits is None:
        return dict.fromkeys(LIMIT_FIELDS, "")
    return {
        "rate": "" if limits.rate is None else str(limits.rate),
        "concurrency": "" if limits.concurrency is None else str(limits.concurrency),
        "key_rate": "" if limits.key_rate is None else str(limits.key_rate),
        "key_concurrency": "" if limits.key_concurrency is None else str(limits.key_concurrency),
    }


class QueuePages(DashboardBase):
    async def queue_page(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        return await self._page(request, found)

    async def queue_live(self, request: Request) -> Response:
        """The page's live part: counts, state, pause or resume, paused tasks, limits in use."""
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        name = request.path_params["queue"]
        try:
            queue = await queue_ops.get_queue(
                await self.get_client(), found.principal, check_queue_name(name)
            )
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=QUEUE_MISSING)
        return self.render(request, found, "_queue_live.html", q=queue, back=self._page_path(request, name))

    async def throughput_fragment(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        name = request.query_params.get("queue") or None
        try:
            data = await queue_ops.throughput(await self.get_client(), found.principal, name)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=QUEUE_MISSING)
        return self.render(request, found, "_throughput.html", **throughput_context(request, data))

    async def set_limits(self, request: Request) -> Response:
        name = request.path_params["queue"]
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        found, form = checked
        client = await self.get_client()
        clearing = form.get("action") == "clear"
        try:
            if clearing:
                if not form.get("confirm"):
                    return await self._page(
                        request,
                        found,
                        limits_error="Tick the box to confirm clearing every limit of this queue.",
                        status_code=422,
                    )
                limits = QueueLimits()
            else:
                try:
                    limits = parse_limits(form)
                except InvalidOptionError as exc:
                    return await self._page(
                        request,
                        found,
                        limits_error=str(exc),
                        limit_form={f: form.text(f) for f in LIMIT_FIELDS},
                        status_code=422,
                    )
            await queue_ops.set_queue_limits(client, found.principal, check_queue_name(name), limits)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=QUEUE_MISSING)
        notice = (
            f"Limits of queue {name} cleared."
            if clearing
            else f"Limits of queue {name} set: {limits.describe()}."
        )
        return self.redirect(request, self._page_path(request, name), notice)

    # -- the page ---------------------------------------------------------------------

    def _page_path(self, request: Request, name: str) -> str:
        return link(request, "dashboard_queue", queue=name)

    async def _page(
        self,
        request: Request,
        found: Session,
        *,
        limits_error: str | None = None,
        limit_form: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        name = request.path_params["queue"]
        client = await self.get_client()
        principal = found.principal
        try:
            name = check_queue_name(name)
            queue = await queue_ops.get_queue(client, principal, name)
            limits = await queue_ops.queue_limits(client, principal, name)
            states = await self._state_jobs(request, client, principal, queue)
            throughput = await queue_ops.throughput(client, principal, name)
        except (UnknownQueueError, InvalidOptionError):
            return self.not_found(request, found, f"There is no queue named {name!r}.")
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=QUEUE_MISSING)
        return self.render(
            request,
            found,
            "queue.html",
            status_code=status_code,
            q=queue,
            limits=limits,
            limit_form=limit_form
            if limit_form is not None
            else limit_values(limits.limits if limits else None),
            limits_error=limits_error,
            can_admin=principal.role >= Role.ADMIN,
            states=states,
            back=self._page_path(request, name),
            section="overview",
            **throughput_context(request, throughput),
        )

    async def _state_jobs(
        self, request: Request, client: Conveyor, principal: Principal, queue: QueueOverview
    ) -> list[StateJobs]:
        totals: dict[str, int | None] = {
            "available": queue.waiting,
            "scheduled": queue.scheduled,
            "running": queue.running,
            "completed": None,
            "dead": queue.dead,
        }
        jobs_url = maybe_link(request, "dashboard_jobs")
        found = []
        for state, heading in STATES:
            page = await job_ops.search_jobs(client, principal, queue=queue.queue, state=state, limit=SHORT)
            found.append(
                StateJobs(
                    state=state,
                    heading=heading,
                    jobs=page.items,
                    total=totals[state],
                    more=page.next_cursor is not None,
                    list_url=None
                    if jobs_url is None
                    else jobs_url + "?" + urlencode({"queue": queue.queue, "state": state}),
                )
            )
        return found
