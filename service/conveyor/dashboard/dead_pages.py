"""The dashboard's dead letters: the dead-letter table with filters and keyset paging, each
job's errors (a fragment, loaded when its "show" is opened), retrying one job, and the bulk
actions (retry or purge the selected jobs, or every job matching the filter) behind a
confirmation page that says how many jobs they take.

Everything goes through ``conveyor.ops.dead_jobs`` as the session's principal: listing and
counting need a viewer, retrying an operator, purging an admin (the page shows only the
buttons the role may use; a forged POST is refused there with 403). A bulk POST without the
confirmation page's ``confirm=yes`` is refused (422) before anything is done.

Times in the filters are UTC: ``2026-12-07T16:00`` (the browser's datetime-local input, read
as UTC) or RFC 3339 with an offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ..api.problems import problem_for
from ..errors import ConflictError, ConveyorError, InvalidOptionError, NotFoundError
from ..ops import dead_jobs as dead_ops
from ..ops import queues as queue_ops
from ..ops.roles import Principal, Role, require
from ..queue.client import Conveyor
from .base import Action, DashboardBase, Form
from .render import link

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_IDS = 1000  # jobs selected in one bulk action, as the API's
FILTERS = ("queue", "task", "died_after", "died_before")
EXCERPT = 140  # characters of the last error shown in the table
PREVIEW = 4000  # characters of the last error a row holds for its "show" before (or without) htmx
ACTIONS = {
    "retry-selected": ("retry", "selected"),
    "retry-matching": ("retry", "matching"),
    "purge-selected": ("purge", "selected"),
    "purge-matching": ("purge", "matching"),
}


@dataclass(frozen=True)
class DeadFilters:
    """The list's filters, parsed; ``text`` keeps each as the form shows it."""

    queue: str | None = None
    task: str | None = None
    died_after: datetime | None = None
    died_before: datetime | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.queue, self.task, self.died_after, self.died_before))

    def args(self) -> dict[str, Any]:
        """The filters given, as the ops functions take them."""
        found = {
            "queue": self.queue,
            "task": self.task,
            "died_after": self.died_after,
            "died_before": self.died_before,
        }
        return {name: value for name, value in found.items() if value is not None}

    def text(self) -> dict[str, str]:
        """The filters given as query parameters (times as naive UTC, the form's format; to the
        microsecond when they have one, so a confirmation's pinned time is carried exactly)."""
        found = {}
        for name, value in self.args().items():
            if isinstance(value, datetime):
                spec = "seconds"  # what a datetime-local field writes; it takes milliseconds too
                if value.microsecond:
                    spec = "microseconds" if value.microsecond % 1000 else "milliseconds"
                value = value.replace(tzinfo=None).isoformat(timespec=spec)
            found[name] = value
        return found

    def describe(self) -> str:
        parts = []
        if self.queue is not None:
            parts.append(f"queue {self.queue}")
        if self.task is not None:
            parts.append(f"task {self.task}")
        if self.died_after is not None:
            parts.append(f"died at or after {self.died_after:%Y-%m-%d %H:%M:%S} UTC")
        if self.died_before is not None:
            parts.append(f"died before {self.died_before:%Y-%m-%d %H:%M:%S} UTC")
        return ", ".join(parts) if parts else "no filter: every dead job"


def pinned(filters: DeadFilters, now: datetime) -> DeadFilters:
    """The filters of a confirmation of a bulk action by filter, closed at ``now``: the POST
    it makes takes the jobs dead when it was shown (and counted), not those that died while
    it was read (a purge must not delete jobs nobody was shown)."""
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as a date-time field has it
    if filters.died_before is not None and filters.died_before <= now:
        return filters
    if filters.died_after is not None and filters.died_after >= now:
        return filters  # nothing died yet in that range: the count says 0
    return replace(filters, died_before=now)


def parse_filters(params: Mapping[str, str]) -> DeadFilters:
    """The filters of a query string or a form; InvalidOptionError for a time that is not one."""
    queue = (params.get("queue") or "").strip() or None
    task = (params.get("task") or "").strip() or None
    after = parse_time(params.get("died_after"), "died after")
    before = parse_time(params.get("died_before"), "died before")
    if after is not None and before is not None and after >= before:
        raise InvalidOptionError("'died after' must be earlier than 'died before'")
    return DeadFilters(queue, task, after, before)


def parse_time(value: str | None, label: str) -> datetime | None:
    """A UTC time: ISO 8601 (a naive one is UTC), or None for an empty field."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time; or one that is past year 9999 in UTC
        raise InvalidOptionError(
            f"{label}: {text[:40]!r} is not a time; write it as 2026-12-07T16:00 (UTC)"
        ) from None


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return PAGE_SIZE
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise InvalidOptionError(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(value)


def parse_ids(values: list[str]) -> list[int]:
    ids = []
    for value in values:
        text = value.strip()
        if not (text.isascii() and text.isdigit()):  # '²' is a digit to str.isdigit, not to int()
            raise InvalidOptionError(f"{value[:20]!r} is not a job id")
        ids.append(int(text))
    if not ids:
        raise InvalidOptionError("no job selected: tick the jobs to act on first")
    if len(ids) > MAX_IDS:
        raise InvalidOptionError(f"at most {MAX_IDS} jobs at a time")
    return list(dict.fromkeys(ids))


def excerpt(error: str | None) -> str:
    """The first line of an error, cut to EXCERPT characters."""
    if not error:
        return ""
    line = error.strip().splitlines()[0] if error.strip() else ""
    return line if len(line) <= EXCERPT else line[: EXCERPT - 1] + "\u2026"


def preview(error: str | None) -> str:
    """The start of an error, as a row holds it until "show" loads every error in full: an
    error can be megabytes long, and a page of 200 such rows must not be hundreds of them."""
    if not error or len(error) <= PREVIEW:
        return error or ""
    return error[:PREVIEW] + f"\n\u2026 ({len(error) - PREVIEW} more characters)"


def jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


class DeadPages(DashboardBase):
    def _list_url(self, request: Request, filters: DeadFilters, **extra: str) -> str:
        query = {**filters.text(), **extra}
        base = link(request, "dashboard_dead")
        return base + ("?" + urlencode(query) if query else "")

    async def _queue_names(self, client: Conveyor, principal: Principal) -> list[str]:
        return await queue_ops.queue_names(client, principal)

    # -- the list ----------------------------------------------------------------------

    async def dead(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        client = await self.get_client()
        params = request.query_params
        context: dict[str, Any] = {
            "section": "dead",
            "queues": await self._queue_names(client, found.principal),
            "form": {name: params.get(name, "") for name in FILTERS},
            "rows": [],
            "error": None,
            "can_purge": found.principal.role >= Role.ADMIN,
        }
        try:
            filters = parse_filters(params)
            limit = parse_limit(params.get("limit"))
            cursor = params.get("cursor") or None
            page = await dead_ops.dead_letters(
                client, found.principal, **filters.args(), limit=limit, cursor=cursor
            )
        except ConveyorError as exc:
            context["error"] = str(exc)
            return self.render(
                request, found, "dead.html", status_code=problem_for(exc).kind.status, **context
            )
        keep = {} if limit == PAGE_SIZE else {"limit": str(limit)}
        now = datetime.now(UTC)
        context.update(
            form=filters.text(),
            filters=filters,
            rows=[
                {
                    **row,
                    "excerpt": excerpt(row["last_error"]),
                    "preview": preview(row["last_error"]),
                    "age": now - row["died_at"],
                }
                for row in page.items
            ],
            next_url=None
            if page.next_cursor is None
            else self._list_url(request, filters, **keep, cursor=page.next_cursor),
            first_url=self._list_url(request, filters, **keep) if cursor else None,
            here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        )
        return self.render(request, found, "dead.html", **context)

    async def errors_fragment(self, request: Request) -> Response:
        """Every error of one dead job, with its traceback: what a row's "show" opens."""
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        job_id = int(request.path_params["job_id"])
        try:
            job = await dead_ops.get_dead(await self.get_client(), found.principal, job_id)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=(NotFoundError,))
        return self.render(request, found, "_dead_errors.html", job=job)

    # -- the confirmation of a bulk action ---------------------------------------------

    async def confirm(self, request: Request) -> Response:
        """What a bulk action would do, and the form that does it (with ``confirm=yes``)."""
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        params = request.query_params
        client = await self.get_client()
        try:
            action = ACTIONS.get(params.get("do", ""))
            if action is None:
                raise InvalidOptionError("unknown action: use one of " + ", ".join(ACTIONS))
            verb, scope = action
            filters = parse_filters(params)
            back = self._list_url(request, filters)
            ids: list[int] = []
            picks: list[tuple[int, str]] = []
            gone: list[int] = []
            if scope == "selected":
                # Each selected job's death now: the retry puts back only those deaths, so a
                # second POST of this form (a double click, a second tab) runs no job twice.
                for job_id in parse_ids(params.getlist("ids")):
                    try:
                        dead = await dead_ops.get_dead(client, found.principal, job_id)
                    except NotFoundError:
                        gone.append(job_id)
                        continue
                    ids.append(job_id)
                    picks.append((job_id, dead["died_at"].isoformat()))
                count = len(ids)
            else:
                filters = pinned(filters, datetime.now(UTC))
                count = await dead_ops.count_dead(client, found.principal, **filters.args())
        except ConveyorError as exc:
            return self.failed(request, found, exc)
        return self.render(
            request,
            found,
            "dead_confirm.html",
            section="dead",
            verb=verb,
            scope=scope,
            ids=ids,
            picks=picks,
            gone=gone,
            count=count,
            count_text=jobs(count),
            filters=filters,
            back=back,
        )

    # -- actions -------------------------------------------------------------------------

    async def retry_one(self, request: Request) -> Response:
        job_id = int(request.path_params["job_id"])

        async def retry(client: Conveyor, principal: Principal, form: Form) -> str:
            # The row's form names the death it showed: a second POST of it (a double click,
            # a second tab) finds the job retried, or dead again of a later death, and is
            # refused (409) rather than running the job once more.
            died = parse_time(form.get("died"), "died")
            await dead_ops.retry_dead(client, principal, job_id, died_at=died)
            return f"Retried job {job_id}: it is waiting to run again."

        return await self._run(request, retry, missing=(NotFoundError,))

    async def retry(self, request: Request) -> Response:
        async def retry(client: Conveyor, principal: Principal, form: Form) -> str:
            scope, filters = _confirmed(form)
            if scope == "selected":
                done = await retry_picked(client, principal, form.getlist("pick"))
            else:
                done = await dead_ops.retry_many(client, principal, **filters.args())
            notice = f"Retried {jobs(len(done.retried))}."
            if done.refused:
                why = "; ".join(f"{job_id}: {reason}" for job_id, reason in list(done.refused.items())[:5])
                notice += f" {jobs(len(done.refused))} could not go back ({why})."
            return notice

        return await self._run(request, retry)

    async def purge(self, request: Request) -> Response:
        async def purge(client: Conveyor, principal: Principal, form: Form) -> str:
            scope, filters = _confirmed(form)
            if scope == "selected":
                count = await dead_ops.purge(client, principal, ids=parse_ids(form.getlist("ids")))
            else:
                count = await dead_ops.purge(
                    client, principal, **filters.args(), everything=not filters.given
                )
            return f"Purged {jobs(count)} from the dead letters."

        return await self._run(request, purge)

    async def _run(
        self, request: Request, action: Action, *, missing: tuple[type[ConveyorError], ...] = ()
    ) -> Response:
        """As ``act``, going back to the list page the form came from: its ``back`` field if
        that is the list, else the list with the filters the form carried."""
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        found, form = checked
        try:
            notice = await action(await self.get_client(), found.principal, form)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=missing)
        return self.redirect(request, self._back(request, form), notice)

    def _back(self, request: Request, form: Form) -> str:
        root = link(request, "dashboard_dead")
        back = form.text("back")
        if back == root or (back.startswith(root + "?") and "\\" not in back):
            return back
        try:
            filters = parse_filters({name: form.text(name) for name in FILTERS})
        except InvalidOptionError:
            return root
        return self._list_url(request, filters)


async def retry_picked(client: Conveyor, principal: Principal, picks: list[str]) -> dead_ops.Retried:
    """Retry each picked job (``ID@DIED_AT``, as the confirmation showed it) only if it is still
    dead of that death; the others are refused with the reason. The role is checked first."""
    require(principal, Role.OPERATOR, "retrying dead jobs")
    deaths: dict[int, datetime] = {}
    for pick in picks:
        id_text, _, died_text = pick.partition("@")
        [checked] = parse_ids([id_text])
        when = parse_time(died_text, "died")
        if when is None:
            raise InvalidOptionError(f"{pick[:40]!r}: no death time")
        deaths[checked] = when
    if not deaths:
        raise InvalidOptionError("no job selected: tick the jobs to act on first")
    if len(deaths) > MAX_IDS:
        raise InvalidOptionError(f"at most {MAX_IDS} jobs at a time")
    retried: list[int] = []
    refused: dict[int, str] = {}
    for job_id, died in deaths.items():
        try:
            await dead_ops.retry_dead(client, principal, job_id, died_at=died)
        except (ConflictError, NotFoundError) as exc:
            refused[job_id] = str(exc)
        else:
            retried.append(job_id)
    return dead_ops.Retried(retried, refused)


def _confirmed(form: Form) -> tuple[str, DeadFilters]:
    """The scope and filters of a confirmed bulk action; refused unless confirmed."""
    if form.get("confirm") != "yes":
        raise InvalidOptionError(
            "not confirmed: a bulk retry or purge needs its confirmation step (confirm=yes); nothing was done"
        )
    scope = form.get("scope")
    if scope not in ("selected", "matching"):
        raise InvalidOptionError("scope must be 'selected' or 'matching'")
    return scope, parse_filters({name: form.text(name) for name in FILTERS})
